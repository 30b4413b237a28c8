//! Incident reports as a readable table and as a self-contained HTML page.

use std::fmt::Write as _;
use std::time::SystemTime;

use super::IncidentReport;
use crate::ledger::Outcome;

fn time(t: Option<SystemTime>) -> String {
    t.map(|t| humantime::format_rfc3339_seconds(t).to_string())
        .unwrap_or_else(|| "-".into())
}

fn pct(n: u64, of: u64) -> String {
    if of == 0 {
        "-".into()
    } else {
        format!("{:.1}%", n as f64 * 100.0 / of as f64)
    }
}

/// The report as plain text: headline numbers, then tables.
pub fn render_text(r: &IncidentReport) -> String {
    let i = &r.incident;
    let c = &r.campaign;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Incident {}  campaign {}  ({})",
        i.id,
        i.campaign,
        if i.is_open() { "open" } else { "closed" }
    );
    let _ = writeln!(s, "Reason:        {}", i.reason);
    let _ = writeln!(
        s,
        "Opened:        {} by {}",
        time(Some(i.opened_at)),
        i.opened_by
    );
    if let Some(closed) = i.closed_at {
        let _ = writeln!(
            s,
            "Closed:        {} by {}",
            time(Some(closed)),
            i.closed_by.as_deref().unwrap_or("-")
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "Recipients who got the message:  {}",
        c.relayed_recipients
    );
    let _ = writeln!(s, "  suppressed since:              {}", r.suppressed_now);
    let _ = writeln!(s, "  apology audience:              {}", r.audience);
    let _ = writeln!(s, "First send:    {}", time(c.first_send));
    let _ = writeln!(s, "Last send:     {}", time(c.last_send));
    if c.fingerprints > 0 {
        let _ = writeln!(s, "Distinct bodies relayed: {}", c.fingerprints);
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "{:<20} {:>10} {:>8}", "OUTCOME", "RECORDS", "SHARE");
    for o in Outcome::ALL {
        let n = c.outcome(o);
        if n > 0 {
            let _ = writeln!(s, "{:<20} {:>10} {:>8}", o.as_str(), n, pct(n, c.records));
        }
    }
    let _ = writeln!(s, "{:<20} {:>10}", "total", c.records);
    let table = |s: &mut String, title: &str, rows: &[crate::ledger::Count]| {
        let _ = writeln!(s);
        let _ = writeln!(s, "{:<40} {:>10} {:>8}", title, "RECIPIENTS", "SHARE");
        for row in rows.iter().take(20) {
            let _ = writeln!(
                s,
                "{:<40} {:>10} {:>8}",
                row.key,
                row.count,
                pct(row.count, c.relayed_recipients)
            );
        }
        if rows.len() > 20 {
            let _ = writeln!(s, "… {} more", rows.len() - 20);
        }
    };
    table(&mut s, "RECIPIENT DOMAIN", &c.by_domain);
    table(&mut s, "TENANT", &c.by_tenant);
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "SENDS OVER TIME (buckets of {})",
        humantime::format_duration(c.bucket_width)
    );
    let max = c
        .buckets
        .iter()
        .map(|b| b.relayed)
        .max()
        .unwrap_or(0)
        .max(1);
    for b in &c.buckets {
        let bar = "#".repeat(((b.relayed * 40).div_ceil(max)) as usize);
        let _ = writeln!(
            s,
            "{}  {:>8} relayed {:>6} refused  {}",
            time(Some(b.start)),
            b.relayed,
            b.refused,
            bar
        );
    }
    let _ = writeln!(s);
    if c.findings.is_empty() {
        let _ = writeln!(s, "No findings recorded.");
    } else {
        let _ = writeln!(
            s,
            "{:<28} {:<12} {:<30} {:>8} {:>8}",
            "FINDING", "WHERE", "TOKEN", "RECORDS", "RELAYED"
        );
        for f in &c.findings {
            let _ = writeln!(
                s,
                "{:<28} {:<12} {:<30} {:>8} {:>8}",
                f.rule, f.location, f.token, f.count, f.relayed
            );
        }
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "TIMELINE");
    for e in &i.timeline {
        let _ = writeln!(
            s,
            "{}  {:<7} {:<12} {}",
            time(Some(e.at)),
            e.kind,
            e.actor,
            e.text
        );
    }
    s
}

fn esc(s: &str) -> String {
    html_escape::encode_text(s).into_owned()
}

/// The report as one HTML page with an inline SVG chart of sends over time; no external
/// assets, scripts or fonts.
pub fn render_html(r: &IncidentReport) -> String {
    let i = &r.incident;
    let c = &r.campaign;
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Incident {id} — {camp}</title>\n<style>\
         body{{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:60em}}\
         table{{border-collapse:collapse;margin:1em 0}}td,th{{padding:.25em .8em;border-bottom:1px solid #ddd;text-align:left}}\
         td.n{{text-align:right;font-variant-numeric:tabular-nums}}.big{{font-size:2em;font-weight:bold}}\
         .grid{{display:flex;gap:2em;flex-wrap:wrap}}.box{{border:1px solid #ddd;border-radius:6px;padding:1em}}\
         code{{background:#f4f4f4;padding:0 .2em}}</style></head><body>\n",
        id = esc(&i.id),
        camp = esc(&i.campaign)
    );
    let _ = write!(
        h,
        "<h1>Incident {} <small>({})</small></h1>\n<p>Campaign <code>{}</code> — {}</p>\n\
         <p>Opened {} by {}{}</p>\n",
        esc(&i.id),
        if i.is_open() { "open" } else { "closed" },
        esc(&i.campaign),
        esc(&i.reason),
        time(Some(i.opened_at)),
        esc(&i.opened_by),
        i.closed_at
            .map(|t| format!(", closed {}", time(Some(t))))
            .unwrap_or_default()
    );
    let _ = writeln!(
        h,
        "<div class=\"grid\"><div class=\"box\"><div class=\"big\">{}</div>recipients got the message</div>\
         <div class=\"box\"><div class=\"big\">{}</div>apology audience ({} suppressed since)</div>\
         <div class=\"box\">first send {}<br>last send {}</div></div>",
        c.relayed_recipients,
        r.audience,
        r.suppressed_now,
        time(c.first_send),
        time(c.last_send)
    );
    h.push_str("<h2>Sends over time</h2>\n");
    h.push_str(&svg_chart(r));
    h.push_str("<h2>Outcomes</h2>\n<table><tr><th>outcome</th><th>records</th></tr>\n");
    for o in Outcome::ALL {
        let n = c.outcome(o);
        if n > 0 {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td class=\"n\">{n}</td></tr>",
                o.as_str()
            );
        }
    }
    h.push_str("</table>\n");
    for (title, rows) in [
        ("Recipient domains", &c.by_domain),
        ("Tenants", &c.by_tenant),
    ] {
        let _ = writeln!(
            h,
            "<h2>{title}</h2>\n<table><tr><th>{}</th><th>recipients</th></tr>",
            title.to_lowercase()
        );
        for row in rows.iter() {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td class=\"n\">{}</td></tr>",
                esc(&row.key),
                row.count
            );
        }
        h.push_str("</table>\n");
    }
    h.push_str("<h2>What was wrong</h2>\n");
    if c.findings.is_empty() {
        h.push_str("<p>No findings recorded.</p>\n");
    } else {
        h.push_str("<table><tr><th>rule</th><th>where</th><th>token</th><th>records</th><th>relayed</th></tr>\n");
        for f in &c.findings {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                esc(&f.rule),
                esc(&f.location),
                esc(&f.token),
                f.count,
                f.relayed
            );
        }
        h.push_str("</table>\n");
    }
    h.push_str(
        "<h2>Timeline</h2>\n<table><tr><th>when</th><th>what</th><th>who</th><th></th></tr>\n",
    );
    for e in &i.timeline {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            time(Some(e.at)),
            esc(&e.kind),
            esc(&e.actor),
            esc(&e.text)
        );
    }
    h.push_str("</table>\n</body></html>\n");
    h
}

fn svg_chart(r: &IncidentReport) -> String {
    let b = &r.campaign.buckets;
    let (w, ht, pad) = (720.0_f64, 220.0_f64, 30.0_f64);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{ht}\" viewBox=\"0 0 {w} {ht}\" \
         role=\"img\" aria-label=\"sends over time\">\n"
    );
    if b.is_empty() {
        s.push_str("<text x=\"10\" y=\"20\">no sends recorded</text></svg>\n");
        return s;
    }
    let max = b
        .iter()
        .map(|x| x.relayed + x.refused)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let bw = (w - 2.0 * pad) / b.len() as f64;
    let scale = (ht - 2.0 * pad) / max;
    let _ = writeln!(
        s,
        "<line x1=\"{pad}\" y1=\"{y}\" x2=\"{x2}\" y2=\"{y}\" stroke=\"#888\"/>",
        y = ht - pad,
        x2 = w - pad
    );
    for (k, x) in b.iter().enumerate() {
        let left = pad + k as f64 * bw;
        let hr = x.relayed as f64 * scale;
        let hf = x.refused as f64 * scale;
        let label = format!(
            "{}: {} relayed, {} refused",
            time(Some(x.start)),
            x.relayed,
            x.refused
        );
        let _ = writeln!(
            s,
            "<g><title>{}</title><rect x=\"{left:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{hr:.1}\" fill=\"#c0392b\"/>\
             <rect x=\"{left:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{hf:.1}\" fill=\"#95a5a6\"/></g>",
            esc(&label),
            ht - pad - hr,
            (bw - 1.0).max(0.5),
            ht - pad - hr - hf,
            (bw - 1.0).max(0.5)
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{pad}\" y=\"{}\" font-size=\"11\">{}</text>\
         <text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{}</text>\
         <text x=\"{pad}\" y=\"14\" font-size=\"11\">max {} per {} · red relayed · grey refused</text>",
        ht - 10.0,
        time(b.first().map(|x| x.start)),
        w - pad,
        ht - 10.0,
        time(b.last().map(|x| x.start)),
        max,
        humantime::format_duration(r.campaign.bucket_width)
    );
    s.push_str("</svg>\n");
    s
}
