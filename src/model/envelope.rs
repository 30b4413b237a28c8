//! Who sends, to whom, on whose behalf.

use std::net::IpAddr;

/// The envelope of one message: sender, recipients and the identity it is sent under.
///
/// Front-ends fill in what their protocol tells them; the guard completes `campaign` and `tenant`
/// from the message headers when they are not known yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    /// The reverse-path (`MAIL FROM`), empty for the null sender `<>`.
    pub sender: String,
    /// The forward-paths (`RCPT TO`), as given by the client.
    pub recipients: Vec<String>,
    /// The campaign the message belongs to, when known.
    pub campaign: Option<String>,
    /// The tenant (customer, business unit) the message is sent for, when known.
    pub tenant: Option<String>,
    /// The user the client authenticated as, when it did.
    pub auth_user: Option<String>,
    /// The client's address, when the front-end has one.
    pub client_ip: Option<IpAddr>,
}

impl Envelope {
    /// An envelope with a sender and no recipients yet.
    pub fn new(sender: impl Into<String>) -> Self {
        Envelope {
            sender: sender.into(),
            ..Envelope::default()
        }
    }

    /// Adds a recipient (builder style).
    pub fn with_recipient(mut self, recipient: impl Into<String>) -> Self {
        self.recipients.push(recipient.into());
        self
    }

    /// Sets the campaign (builder style).
    pub fn with_campaign(mut self, campaign: impl Into<String>) -> Self {
        self.campaign = Some(campaign.into());
        self
    }

    /// Sets the tenant (builder style).
    pub fn with_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// The tenant, falling back to the authenticated user.
    pub fn effective_tenant(&self) -> Option<&str> {
        self.tenant.as_deref().or(self.auth_user.as_deref())
    }
}
