//! A realistic HTML newsletter (multipart/alternative, quoted-printable HTML, preheader, MSO
//! conditionals, a large style sheet, many tracked links) for tests and benches.

#![allow(dead_code)]

/// Where to put a leak in the generated newsletter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leak {
    /// A clean newsletter.
    None,
    /// `{{ first_name }}` in the greeting, near the top.
    Greeting,
    /// `*|FNAME|*` in the last article, near the end.
    Late,
}

const STYLE: &str = r###"<style type="text/css">
  body, table, td, a { -webkit-text-size-adjust: 100%; -ms-text-size-adjust: 100%; }
  table, td { mso-table-lspace: 0pt; mso-table-rspace: 0pt; }
  img { -ms-interpolation-mode: bicubic; border: 0; height: auto; line-height: 100%; outline: none; text-decoration: none; }
  a[x-apple-data-detectors] { color: inherit !important; text-decoration: none !important; }
  .button a { display: inline-block; padding: 12px 24px; border-radius: 4px; }
  @media screen and (max-width: 600px) {
    .wrapper { width: 100% !important; max-width: 100% !important; }
    .column { display: block !important; width: 100% !important; }
    .mobile-hide { display: none !important; }
    .hero h1 { font-size: 28px !important; line-height: 34px !important; }
  }
  @media (prefers-color-scheme: dark) { .dark-bg { background: #111 !important; } }
  u + #body a { color: inherit; text-decoration: none; }
</style>"###;

/// The HTML body: about `articles` × 2.4 KB plus a 4 KB frame.
pub fn html(articles: usize, leak: Leak) -> String {
    let mut h = String::with_capacity(articles * 2600 + 6000);
    h.push_str(r###"<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">
<html xmlns="http://www.w3.org/1999/xhtml" xmlns:v="urn:schemas-microsoft-com:vml" xmlns:o="urn:schemas-microsoft-com:office:office">
<head>
<meta http-equiv="Content-Type" content="text/html; charset=utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>Frühlings-Sale: bis zu 50% Rabatt</title>
<!--[if mso]><xml><o:OfficeDocumentSettings><o:AllowPNG/><o:PixelsPerInch>96</o:PixelsPerInch></o:OfficeDocumentSettings></xml><![endif]-->
"###);
    h.push_str(STYLE);
    h.push_str(r###"
<script type="application/ld+json">{"@context": "http://schema.org", "@type": "EmailMessage", "description": "Spring sale {{ internal }}"}</script>
</head>
<body id="body" style="margin:0; padding:0; background-color:#f4f4f4;">
<div class="preheader" style="display:none; max-height:0; overflow:hidden; mso-hide:all; font-size:1px; line-height:1px; color:#f4f4f4;">Bis zu 50% auf alles – nur dieses Wochenende. Jetzt entdecken!&nbsp;&zwnj;&nbsp;&zwnj;&nbsp;&zwnj;</div>
<!--[if mso | IE]><table role="presentation" border="0" cellpadding="0" cellspacing="0" width="600" align="center"><tr><td><![endif]-->
<table role="presentation" class="wrapper" width="100%" border="0" cellpadding="0" cellspacing="0" style="max-width:600px; margin:0 auto; background-color:#ffffff;">
<tr><td class="hero" style="padding:32px 24px; font-family:Arial, Helvetica, sans-serif;">
<img src="https://cdn.example.test/img/logo.png" width="160" height="40" alt="Example Shop" style="display:block; border:0;">
<h1 style="font-size:32px; line-height:38px; margin:24px 0 8px 0; color:#222222;">Frühlings-Sale</h1>
"###);
    if leak == Leak::Greeting {
        h.push_str(r###"<p style="margin:0 0 16px 0; font-size:16px; line-height:24px;">Hallo {{ first_name }},</p>"###);
    } else {
        h.push_str(r###"<p style="margin:0 0 16px 0; font-size:16px; line-height:24px;">Hallo Anna,</p>"###);
    }
    h.push_str(r###"
<p style="margin:0 0 16px 0; font-size:16px; line-height:24px; color:#444444;">der Frühling ist da – und mit ihm unser größter Sale des Jahres: bis zu 50% Rabatt auf über 2.000 Artikel [1], dazu versandkostenfrei ab 29&nbsp;€. Nur bis Sonntag, 23:59 Uhr.</p>
</td></tr>
"###);
    for n in 0..articles {
        let name = if leak == Leak::Late && n + 1 == articles {
            "*|FNAME|*"
        } else {
            "Outdoor-Jacke &bdquo;Nordwind&ldquo;"
        };
        h.push_str(&format!(r###"<tr><td class="column" style="padding:16px 24px; border-top:1px solid #eeeeee; font-family:Arial, Helvetica, sans-serif;">
<table role="presentation" width="100%" border="0" cellpadding="0" cellspacing="0"><tr>
<td width="160" valign="top" style="padding-right:16px;"><a href="https://click.example.test/ls/click?upn=u001.Xa8Hq-2Bf7k3Lz-2FqP9sWv0-3D-3D_a{n}b7c&amp;utm_source=newsletter&amp;utm_medium=email&amp;utm_campaign=spring-sale-2026&amp;utm_content=article-{n}" target="_blank"><img src="https://cdn.example.test/img/products/{n}-480x480.jpg" width="160" height="160" alt="Produktbild Artikel {n}" title="Artikel {n} ansehen" style="display:block; border:0; border-radius:4px;"></a></td>
<td valign="top" style="font-size:15px; line-height:22px; color:#333333;">
<h2 style="margin:0 0 8px 0; font-size:20px; line-height:26px; color:#111111;">{name}</h2>
<p style="margin:0 0 8px 0;">Wasserdicht, atmungsaktiv und mit recyceltem Futter: die ideale Begleiterin für Touren im Mittelgebirge. Statt 199,95&nbsp;€ jetzt nur <strong style="color:#c00000;">99,95&nbsp;€</strong> (&ndash;50%). Größen S&ndash;XXL, solange der Vorrat reicht.</p>
<p style="margin:0 0 8px 0; font-size:13px; color:#777777;">Art.-Nr. 4711-{n} &middot; Bewertung 4,8/5 (312 Bewertungen) &middot; Lieferzeit 2&ndash;3 Werktage</p>
<table role="presentation" border="0" cellpadding="0" cellspacing="0" class="button"><tr><td style="border-radius:4px; background-color:#0b5cff;"><!--[if mso]><v:roundrect xmlns:v="urn:schemas-microsoft-com:vml" href="https://example.test/p/{n}" style="height:40px;v-text-anchor:middle;width:180px;" arcsize="10%" stroke="f" fillcolor="#0b5cff"><w:anchorlock/><center><![endif]--><a href="https://click.example.test/ls/click?upn=u001.Xa8Hq-2Bf7k3Lz-2FqP9sWv0-3D-3D_c{n}d9e&amp;utm_source=newsletter&amp;utm_medium=email&amp;utm_campaign=spring-sale-2026" style="color:#ffffff; font-size:15px; font-weight:bold; text-decoration:none; display:inline-block; padding:10px 20px;">Jetzt ansehen &rarr;</a><!--[if mso]></center></v:roundrect><![endif]--></td></tr></table>
</td></tr></table>
</td></tr>
"###));
    }
    h.push_str(r###"<tr><td style="padding:24px; font-family:Arial, Helvetica, sans-serif; font-size:12px; line-height:18px; color:#888888; background-color:#fafafa;">
<p style="margin:0 0 8px 0;">[1] Ausgenommen Artikel aus dem Bereich &bdquo;Neu&ldquo; sowie Gutscheine. Preise inkl. MwSt., zzgl. Versand. Angebot gültig bis 30.04.2026, solange der Vorrat reicht.</p>
<p style="margin:0 0 8px 0;">Sie erhalten diese E-Mail, weil Sie sich für unseren Newsletter angemeldet haben. <a href="https://example.test/unsubscribe?u=8f3c2a9d1e&amp;l=de" style="color:#888888;">Abmelden</a> &middot; <a href="https://example.test/preferences?u=8f3c2a9d1e" style="color:#888888;">Einstellungen</a> &middot; <a href="mailto:service@example.test?subject=Frage%20zum%20Newsletter" style="color:#888888;">service@example.test</a></p>
<p style="margin:0;">Example Shop GmbH &middot; Musterstraße 1 &middot; 12345 Musterstadt &middot; Geschäftsführer: Max Muster &middot; HRB 12345 &middot; USt-IdNr. DE123456789</p>
</td></tr>
</table>
<!--[if mso | IE]></td></tr></table><![endif]-->
</body>
</html>
"###);
    h
}

/// The text part matching [`html`].
pub fn text(articles: usize) -> String {
    let mut t = String::from("Frühlings-Sale\r\n\r\nHallo Anna,\r\n\r\nder Frühling ist da – bis zu 50% Rabatt auf über 2.000 Artikel [1].\r\n\r\n");
    for n in 0..articles.min(10) {
        t.push_str(&format!("Outdoor-Jacke „Nordwind“ – jetzt 99,95 € statt 199,95 €\r\nhttps://example.test/p/{n}?utm_source=newsletter\r\n\r\n"));
    }
    t.push_str("[1] Ausgenommen Artikel aus dem Bereich „Neu“.\r\nAbmelden: https://example.test/unsubscribe?u=8f3c2a9d1e\r\n");
    t
}

/// Quoted-printable encoding (RFC 2045) with soft line breaks at 76 characters.
pub fn qp(input: &str) -> String {
    let mut out = String::with_capacity(input.len() * 11 / 10);
    let mut col = 0;
    let bytes = input.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'\r' && bytes.get(i + 1) == Some(&b'\n') || b == b'\n' {
            out.push_str("\r\n");
            col = 0;
            i += if b == b'\r' { 2 } else { 1 };
            continue;
        }
        let enc = if (b == b' ' || b == b'\t')
            && matches!(bytes.get(i + 1), None | Some(b'\r') | Some(b'\n'))
            || b == b'='
            || !(b == b' ' || b == b'\t' || (33..=126).contains(&b))
        {
            format!("={b:02X}")
        } else {
            (b as char).to_string()
        };
        if col + enc.len() > 75 {
            out.push_str("=\r\n");
            col = 0;
        }
        out.push_str(&enc);
        col += enc.len();
        i += 1;
    }
    out
}

/// The whole message: multipart/alternative, text and quoted-printable HTML.
pub fn message(articles: usize, leak: Leak) -> Vec<u8> {
    let mut m = String::new();
    m.push_str("From: \"Example Shop\" <news@example.test>\r\n");
    m.push_str("To: \"Anna Muster\" <anna@example.test>\r\n");
    m.push_str("Subject: =?UTF-8?Q?Fr=C3=BChlings-Sale:_bis_zu_50%_Rabatt?=\r\n");
    m.push_str("Date: Tue, 14 Apr 2026 08:00:00 +0200\r\n");
    m.push_str("Message-ID: <spring-2026.4711@example.test>\r\n");
    m.push_str("X-Campaign-ID: spring-sale-2026\r\n");
    m.push_str("List-Unsubscribe: <https://example.test/unsubscribe?u=8f3c2a9d1e>\r\n");
    m.push_str("MIME-Version: 1.0\r\n");
    m.push_str("Content-Type: multipart/alternative; boundary=\"=_sg_b1\"\r\n\r\n");
    m.push_str("--=_sg_b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n");
    m.push_str(&qp(&text(articles)));
    m.push_str("\r\n--=_sg_b1\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n");
    m.push_str(&qp(&html(articles, leak)));
    m.push_str("\r\n--=_sg_b1--\r\n");
    m.into_bytes()
}
