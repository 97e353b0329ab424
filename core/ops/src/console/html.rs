//! The console's markup: escaping, the page frame, tables, and the inline
//! CSS and JavaScript (no external asset, no CDN).

use std::fmt::Write as _;

/// Escapes text for HTML content and attribute values.
pub(crate) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a path segment or query value.
pub(crate) fn enc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A link.
pub(crate) fn link(href: &str, text: &str) -> String {
    format!("<a href=\"{}\">{}</a>", esc(href), esc(text))
}

/// A table; cells are HTML already (escape text with [`esc`]).
pub(crate) fn table(id: &str, headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!("<table id=\"{}\"><thead><tr>", esc(id));
    for h in headers {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    if rows.is_empty() {
        out.push_str("<p class=\"empty\">Nothing here.</p>");
    }
    out
}

/// An action button: the script POSTs to `url` with the token, shows the
/// answer's `message`, and reloads the page (or goes to `then`) on success.
pub(crate) fn action(url: &str, label: &str, then: Option<&str>) -> String {
    let then = then.map_or_else(String::new, |t| format!(" data-then=\"{}\"", esc(t)));
    format!(
        "<button type=\"button\" class=\"action\" data-post=\"{}\"{then}>{}</button>",
        esc(url),
        esc(label)
    )
}

/// Pretty JSON in a `<pre>`.
pub(crate) fn json_block(id: &str, value: &serde_json::Value) -> String {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    format!("<pre id=\"{}\">{}</pre>", esc(id), esc(&text))
}

/// The navigation entries: (path under the base, label).
const NAV: [(&str, &str); 9] = [
    ("/", "Overview"),
    ("/streams", "Streams"),
    ("/live", "Live"),
    ("/projections", "Projections"),
    ("/consumers", "Consumers"),
    ("/dlq", "Dead letters"),
    ("/sagas", "Sagas"),
    ("/schemas", "Schemas"),
    ("/catalog", "Catalog"),
];

/// A whole page.
pub(crate) fn page(base: &str, title: &str, body: &str) -> String {
    let mut nav = String::new();
    for (path, label) in NAV {
        let href = if path == "/" {
            format!("{base}/")
        } else {
            format!("{base}{path}")
        };
        let _ = write!(nav, "{} ", link(&href, label));
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · Orchestrix</title><link rel=\"icon\" href=\"data:,\">\
         <style>{CSS}</style></head>\
         <body data-base=\"{base}\"><header><strong>Orchestrix</strong><nav>{nav}</nav>\
         <label>token <input id=\"token\" type=\"password\" autocomplete=\"off\" \
         placeholder=\"for actions\"></label></header>\
         <main><h1>{title}</h1><p id=\"flash\" role=\"status\"></p>{body}</main>\
         <script>{JS}</script></body></html>\n",
        title = esc(title),
        base = esc(base),
    )
}

const CSS: &str = "\
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1b1f24;background:#f6f8fa}\
header{display:flex;gap:1.5em;align-items:center;padding:.6em 1.2em;background:#24292f;color:#fff}\
header a{color:#c9d1d9;margin-right:.8em;text-decoration:none}header a:hover{color:#fff}\
header label{margin-left:auto;font-size:12px}\
main{padding:1em 1.5em}h1{font-size:20px;margin:.2em 0 .8em}\
table{border-collapse:collapse;background:#fff;margin-bottom:1em}\
th,td{border:1px solid #d0d7de;padding:.3em .6em;text-align:left;vertical-align:top}\
th{background:#eaeef2}td.num{text-align:right}\
pre{background:#fff;border:1px solid #d0d7de;padding:.8em;overflow:auto;max-width:100%}\
.empty{color:#57606a}.lag{color:#9a6700;font-weight:600}\
#flash.ok{color:#1a7f37}#flash.err{color:#cf222e}\
button.action{cursor:pointer}\
.timeline{list-style:none;padding-left:0}.timeline li{border-left:3px solid #0969da;margin:0 0 .6em;padding:.2em .8em;background:#fff}\
.timeline li.step{border-color:#9a6700}.timeline li.status{border-color:#1a7f37}";

const JS: &str = "\
(function(){\
var base=document.body.dataset.base||'';\
var t=document.getElementById('token'),f=document.getElementById('flash');\
t.value=sessionStorage.getItem('orchestrix-token')||'';\
t.addEventListener('input',function(){sessionStorage.setItem('orchestrix-token',t.value)});\
document.querySelectorAll('button[data-post]').forEach(function(b){\
b.addEventListener('click',function(){\
b.disabled=true;f.className='';f.textContent='working…';\
fetch(b.dataset.post,{method:'POST',headers:{'Authorization':'Bearer '+t.value}})\
.then(function(r){return r.json().then(function(j){return [r.ok,j]})})\
.then(function(x){f.textContent=x[1].message;f.className=x[0]?'ok':'err';b.disabled=false;\
if(x[0]){sessionStorage.setItem('orchestrix-flash',x[1].message);\
if(b.dataset.then){location.href=b.dataset.then}else{location.reload()}}})\
.catch(function(e){f.textContent=String(e);f.className='err';b.disabled=false})})});\
var kept=sessionStorage.getItem('orchestrix-flash');\
if(kept){sessionStorage.removeItem('orchestrix-flash');f.textContent=kept;f.className='ok'}\
var live=document.getElementById('live');\
if(live){var after=Number(live.dataset.after||0),n=document.getElementById('live-count');\
function esc(s){var d=document.createElement('div');d.textContent=String(s);return d.innerHTML}\
function poll(){fetch(base+'/api/events?after='+after+'&limit=200').then(function(r){return r.json()})\
.then(function(evs){evs.forEach(function(e){after=Math.max(after,e.position);\
var tr=document.createElement('tr');\
tr.innerHTML='<td class=num>'+e.position+'</td><td><a href=\"'+base+'/stream/'+encodeURIComponent(e.stream)+'\">'+esc(e.stream)+'</a></td><td class=num>'+e.revision+'</td><td><a href=\"'+base+'/event/'+e.id+'\">'+esc(e.type)+'</a></td><td>'+esc(e.time)+'</td>';\
live.querySelector('tbody').prepend(tr)});\
n.textContent=String(after);live.dataset.after=String(after)})\
.catch(function(){}).then(function(){setTimeout(poll,1000)})}\
poll()}\
})();";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_encodes_segments() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(enc("saga_transfer-t 1/2"), "saga_transfer-t%201%2F2");
    }

    #[test]
    fn a_page_has_no_external_asset() {
        let html = page("/console", "Streams", "<p>x</p>");
        assert!(!html.contains("http://") && !html.contains("https://"));
        assert!(html.contains("href=\"/console/streams\""));
    }
}
