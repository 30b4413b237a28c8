//! Word lists: HTML element names, merge-field words, greetings.

/// Every element name a browser or mail client knows: the WHATWG list including obsolete and
/// non-conforming elements, the SVG and MathML elements seen in mail, and Outlook's `<xml>`.
/// Sorted, lower case (binary-searched).
const ELEMENTS: &[&str] = &[
    "a",
    "abbr",
    "acronym",
    "address",
    "animate",
    "annotation",
    "applet",
    "area",
    "article",
    "aside",
    "audio",
    "b",
    "base",
    "basefont",
    "bdi",
    "bdo",
    "bgsound",
    "big",
    "blink",
    "blockquote",
    "body",
    "br",
    "button",
    "canvas",
    "caption",
    "center",
    "circle",
    "cite",
    "clippath",
    "code",
    "col",
    "colgroup",
    "command",
    "content",
    "data",
    "datalist",
    "dd",
    "defs",
    "del",
    "desc",
    "details",
    "dfn",
    "dialog",
    "dir",
    "div",
    "dl",
    "dt",
    "element",
    "ellipse",
    "em",
    "embed",
    "feblend",
    "fecolormatrix",
    "fegaussianblur",
    "feoffset",
    "fieldset",
    "figcaption",
    "figure",
    "filter",
    "font",
    "footer",
    "foreignobject",
    "form",
    "frame",
    "frameset",
    "g",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "head",
    "header",
    "hgroup",
    "hr",
    "html",
    "i",
    "iframe",
    "ilayer",
    "image",
    "img",
    "input",
    "ins",
    "isindex",
    "kbd",
    "keygen",
    "label",
    "layer",
    "legend",
    "li",
    "line",
    "lineargradient",
    "link",
    "listing",
    "main",
    "map",
    "mark",
    "marquee",
    "mask",
    "math",
    "menu",
    "menuitem",
    "meta",
    "meter",
    "mfrac",
    "mi",
    "mn",
    "mo",
    "mrow",
    "ms",
    "msqrt",
    "msub",
    "msup",
    "mtext",
    "multicol",
    "nav",
    "nextid",
    "nobr",
    "noembed",
    "noframes",
    "nolayer",
    "noscript",
    "object",
    "ol",
    "optgroup",
    "option",
    "output",
    "p",
    "param",
    "path",
    "pattern",
    "picture",
    "plaintext",
    "polygon",
    "polyline",
    "pre",
    "progress",
    "q",
    "radialgradient",
    "rb",
    "rbc",
    "rect",
    "rp",
    "rt",
    "rtc",
    "ruby",
    "s",
    "samp",
    "script",
    "search",
    "section",
    "select",
    "selectedcontent",
    "semantics",
    "shadow",
    "slot",
    "small",
    "source",
    "spacer",
    "span",
    "stop",
    "strike",
    "strong",
    "style",
    "sub",
    "summary",
    "sup",
    "svg",
    "symbol",
    "table",
    "tbody",
    "td",
    "template",
    "text",
    "textarea",
    "textpath",
    "tfoot",
    "th",
    "thead",
    "time",
    "title",
    "tr",
    "track",
    "tspan",
    "tt",
    "u",
    "ul",
    "use",
    "var",
    "video",
    "wbr",
    "xml",
    "xmp",
];

/// What a tag name is, as bit flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Kind(u8);

impl Kind {
    const KNOWN: u8 = 1;
    const BLOCK: u8 = 2;
    const VOID: u8 = 4;
    const RAW: u8 = 8;

    /// A known HTML element (or a custom or namespaced one).
    pub(super) fn known(self) -> bool {
        self.0 & Kind::KNOWN != 0
    }

    /// Its start or end breaks the flow of text into a new block (for greeting detection and to
    /// keep separate paragraphs from forming one token).
    pub(super) fn block(self) -> bool {
        self.0 & Kind::BLOCK != 0
    }

    /// A void element: never has an end tag.
    pub(super) fn void(self) -> bool {
        self.0 & Kind::VOID != 0
    }

    /// Raw text a mail client does not show as body text (`<style>`, `<script>`, `<title>`…).
    pub(super) fn raw_hidden(self) -> bool {
        self.0 & Kind::RAW != 0
    }
}

const BLOCKS: &[&str] = &[
    "address",
    "article",
    "aside",
    "blockquote",
    "body",
    "br",
    "caption",
    "center",
    "dd",
    "details",
    "dialog",
    "div",
    "dl",
    "dt",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "form",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "head",
    "header",
    "hr",
    "html",
    "img",
    "li",
    "main",
    "nav",
    "ol",
    "p",
    "pre",
    "section",
    "summary",
    "table",
    "tbody",
    "td",
    "tfoot",
    "th",
    "thead",
    "tr",
    "ul",
];

const VOIDS: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
    "track", "wbr",
];

const RAW_HIDDEN: &[&str] = &[
    "iframe", "noembed", "noframes", "script", "style", "textarea", "title", "xmp",
];

/// Packs an ASCII name of at most 16 bytes, lower-cased, into an integer (`None` otherwise).
fn pack(name: &[u8]) -> Option<u128> {
    if name.is_empty() || name.len() > 16 {
        return None;
    }
    let mut v = 0u128;
    for &c in name {
        if !c.is_ascii() {
            return None;
        }
        v = (v << 8) | u128::from(c.to_ascii_lowercase());
    }
    Some(v)
}

/// Every element name with its kind, sorted by packed name.
static TABLE: std::sync::LazyLock<Vec<(u128, Kind)>> = std::sync::LazyLock::new(|| {
    let mut t: Vec<(u128, Kind)> = ELEMENTS
        .iter()
        .filter_map(|n| {
            let mut k = Kind::KNOWN;
            if BLOCKS.contains(n) {
                k |= Kind::BLOCK;
            }
            if VOIDS.contains(n) {
                k |= Kind::VOID;
            }
            if RAW_HIDDEN.contains(n) {
                k |= Kind::RAW;
            }
            pack(n.as_bytes()).map(|p| (p, Kind(k)))
        })
        .collect();
    t.sort_unstable_by_key(|e| e.0);
    t
});

/// Classifies a tag name (any case). Names containing `-` (custom elements, AMP, MJML) or `:`
/// (Outlook's `o:p`, `v:rect`, `w:anchorlock`) are known; anything else not in the WHATWG list
/// is not.
pub(super) fn kind(name: &[u8]) -> Kind {
    if let Some(p) = pack(name) {
        if let Ok(i) = TABLE.binary_search_by_key(&p, |e| e.0) {
            return TABLE[i].1;
        }
    }
    if name.contains(&b'-') || name.contains(&b':') {
        Kind(Kind::KNOWN)
    } else {
        Kind(0)
    }
}

/// Whether `name` (any case) is a known element name.
pub(super) fn is_known_element(name: &[u8]) -> bool {
    kind(name).known()
}

/// Merge-field names that on their own, between brackets or dashes, are a placeholder
/// (`[Vorname]`, `-fullname-`). Lower case. `email` and `unsubscribe` are left out on purpose:
/// text versions of newsletters show image alt texts and link labels as `[Email]` or
/// `[Unsubscribe]`.
const FIELD_WORDS: &[&str] = &[
    "anrede",
    "companyname",
    "company",
    "customerid",
    "customername",
    "emailaddress",
    "firma",
    "firstname",
    "fname",
    "fullname",
    "greeting",
    "kundenname",
    "kundennummer",
    "lastname",
    "lname",
    "nachname",
    "name",
    "salutation",
    "surname",
    "username",
    "vorname",
];

/// Words that, as one part of a compound identifier (`FirstName`, `order_id`), mark it as a
/// merge field. Lower case.
const PART_WORDS: &[&str] = &[
    "account",
    "address",
    "amount",
    "anrede",
    "balance",
    "birthday",
    "city",
    "client",
    "code",
    "company",
    "contact",
    "country",
    "coupon",
    "customer",
    "date",
    "discount",
    "email",
    "family",
    "firma",
    "first",
    "full",
    "geburtstag",
    "given",
    "id",
    "kunde",
    "kunden",
    "last",
    "lead",
    "mail",
    "member",
    "middle",
    "mobile",
    "nachname",
    "name",
    "nr",
    "number",
    "order",
    "ort",
    "phone",
    "plz",
    "points",
    "postal",
    "postcode",
    "promo",
    "rabatt",
    "recipient",
    "salutation",
    "stadt",
    "street",
    "strasse",
    "subscriber",
    "telefon",
    "title",
    "titel",
    "unsubscribe",
    "url",
    "user",
    "username",
    "voucher",
    "vorname",
    "zip",
];

fn in_list(list: &[&str], word: &str) -> bool {
    list.iter().any(|w| w.eq_ignore_ascii_case(word))
}

/// Whether a bare identifier (letters, digits, `_`) looks like a merge field name: a known field
/// word, anything with an underscore, or a camelCase compound with a known part.
pub(super) fn is_field_like(ident: &str) -> bool {
    if !ident.bytes().any(|b| b.is_ascii_alphabetic()) {
        return false;
    }
    if in_list(FIELD_WORDS, ident) {
        return true;
    }
    if ident.contains('_') {
        return ident.split('_').filter(|p| !p.is_empty()).count() >= 2
            || ident.trim_matches('_').len() >= 3;
    }
    // `iPhone`, `eBay`: a one-letter prefix is a brand, not a compound.
    let parts = camel_parts(ident);
    parts.len() >= 2
        && parts.iter().all(|p| p.len() >= 2)
        && parts.iter().any(|p| in_list(PART_WORDS, p))
}

/// Whether every word of a spaced name (`First Name`, `Company Name`) is a field word part.
pub(super) fn is_spaced_field(words: &[&str]) -> bool {
    words.len() >= 2
        && words.len() <= 3
        && words
            .iter()
            .all(|w| w.bytes().all(|b| b.is_ascii_alphabetic()) && in_list(PART_WORDS, w))
        && words.iter().any(|w| {
            in_list(&["name", "email", "vorname", "nachname", "anrede"], w)
                || w.eq_ignore_ascii_case("id")
        })
}

/// Splits `FirstName`, `firstName`, `HTMLParser`, `order2Id` into their parts.
fn camel_parts(ident: &str) -> Vec<&str> {
    let b = ident.as_bytes();
    let mut parts = Vec::new();
    let mut start = 0;
    for i in 1..b.len() {
        let (p, c) = (b[i - 1], b[i]);
        let next_lower = b.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
        let boundary = (p.is_ascii_lowercase() && c.is_ascii_uppercase())
            || (p.is_ascii_uppercase() && c.is_ascii_uppercase() && next_lower)
            || (p.is_ascii_digit() != c.is_ascii_digit());
        if boundary {
            parts.push(&ident[start..i]);
            start = i;
        }
    }
    parts.push(&ident[start..]);
    parts
}

/// Greetings that always need a name after them: followed directly by punctuation they are an
/// empty substitution (`Dear,`, `Sehr geehrter Herr ,`). Lower case, longest first per prefix.
pub(super) const STRONG_GREETINGS: &[&str] = &[
    "sehr geehrte/r",
    "sehr geehrte(r)",
    "sehr geehrter herr dr.",
    "sehr geehrte frau dr.",
    "sehr geehrter herr",
    "sehr geehrte frau",
    "sehr geehrter",
    "sehr geehrte",
    "guten tag herr",
    "guten tag frau",
    "hallo herr",
    "hallo frau",
    "lieber herr",
    "liebe frau",
    "liebe/r",
    "liebe(r)",
    "lieber",
    "liebe",
    "dear mr.",
    "dear mrs.",
    "dear ms.",
    "dear dr.",
    "dear mr",
    "dear mrs",
    "dear ms",
    "dear dr",
    "dear",
];

/// Greetings that may stand alone (`Hi!`, `Hallo,`): an empty substitution shows as a space
/// before the punctuation (`Hi !`, `Hallo ,`). Lower case.
pub(super) const WEAK_GREETINGS: &[&str] = &[
    "good afternoon",
    "good evening",
    "good morning",
    "guten morgen",
    "guten abend",
    "guten tag",
    "greetings",
    "willkommen",
    "welcome",
    "servus",
    "hello",
    "howdy",
    "hallo",
    "hiya",
    "moin",
    "hey",
    "hi",
];

/// Values a template engine prints for a missing field. Compared case-sensitively.
pub(super) const FAILURE_VALUES: &[&str] = &[
    "[object Object]",
    "undefined",
    "Undefined",
    "(null)",
    "null",
    "NULL",
    "Null",
    "NaN",
    "None",
    "nil",
    "#NAME?",
    "#N/A",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_list_is_sorted() {
        let mut sorted = ELEMENTS.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, ELEMENTS);
    }

    #[test]
    fn kinds() {
        assert!(kind(b"TD").block() && kind(b"td").known());
        assert!(kind(b"br").void() && kind(b"br").block());
        assert!(kind(b"Style").raw_hidden());
        assert!(!kind(b"span").block());
        assert!(kind(b"blockquote").block());
        for list in [BLOCKS, VOIDS, RAW_HIDDEN] {
            for n in list {
                assert!(ELEMENTS.contains(n), "{n}");
            }
        }
    }

    #[test]
    fn known_elements() {
        for n in [
            "p",
            "TD",
            "center",
            "Font",
            "marquee",
            "o:p",
            "v:rect",
            "w:anchorlock",
        ] {
            assert!(is_known_element(n.as_bytes()), "{n}");
        }
        assert!(is_known_element(b"amp-img"));
        for n in ["firstname", "FirstName", "first_name", "Vorname", "NAME"] {
            assert!(!is_known_element(n.as_bytes()), "{n}");
        }
    }

    #[test]
    fn field_like() {
        for w in [
            "FirstName",
            "first_name",
            "FNAME",
            "vorname",
            "CustomerID",
            "orderId",
        ] {
            assert!(is_field_like(w), "{w}");
        }
        for w in [
            "sic", "PDF", "Anzeige", "YouTube", "iPhone", "LinkedIn", "1", "Werbung",
        ] {
            assert!(!is_field_like(w), "{w}");
        }
        assert!(is_spaced_field(&["First", "Name"]));
        assert!(!is_spaced_field(&["Read", "More"]));
    }

    #[test]
    fn camel() {
        assert_eq!(camel_parts("FirstName"), ["First", "Name"]);
        assert_eq!(camel_parts("HTMLParser"), ["HTML", "Parser"]);
        assert_eq!(camel_parts("order2Id"), ["order", "2", "Id"]);
    }
}
