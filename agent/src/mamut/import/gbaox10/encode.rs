//! Writing the fields as the GBAOX10 file: ISO-8859-1 text (characters outside it replaced
//! and reported) in the documented XML structure, with an installation's renamed and extra
//! tags.

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesText, Event};

use super::Fields;
use crate::mamut::import::config::ImportConfig;

/// The declaration the documentation gives (well-formed, as the customer format prints it).
pub const DECLARATION_ENCODING: &str = "iso-8859-1";

/// The text in ISO-8859-1, and the characters that had to be replaced.
pub fn latin1(value: &str) -> (String, Vec<String>) {
    let mut replaced = Vec::new();
    let out = value
        .chars()
        .map(|c| {
            let plain = match c {
                // A line break in a text is a space (in an address, `:` breaks lines).
                '\t' | '\n' | '\r' => return " ".to_owned(),
                c if c.is_control() => " ",
                c if (c as u32) <= 0xFF => return c.to_string(),
                '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{2032}' => "'",
                '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{2033}' => "\"",
                '\u{2010}'..='\u{2015}' | '\u{2212}' => "-",
                '\u{2026}' => "...",
                '\u{20AC}' => "EUR",
                '\u{00A0}' | '\u{2000}'..='\u{200B}' | '\u{202F}' => " ",
                _ => "?",
            };
            replaced.push(format!("U+{:04X}", c as u32));
            plain.to_owned()
        })
        .collect();
    (out, replaced)
}

pub(super) fn write(
    config: &ImportConfig,
    head: &Fields,
    lines: &[Fields],
) -> std::io::Result<Vec<u8>> {
    let mut w = Writer::new(Vec::new());
    w.write_event(Event::Decl(BytesDecl::new(
        "1.0",
        Some(DECLARATION_ENCODING),
        None,
    )))?;
    w.write_event(Event::Text(BytesText::from_escaped("\r\n")))?;
    let fields = |w: &mut Writer<Vec<u8>>,
                  element: &str,
                  fields: &Fields,
                  extra: &[String]|
     -> std::io::Result<()> {
        for (spec, value) in fields {
            w.create_element(config.tag(element, spec.tag))
                .write_text_content(BytesText::new(value))?;
        }
        for tag in extra {
            w.create_element(tag.as_str())
                .write_text_content(BytesText::new(""))?;
        }
        Ok(())
    };
    w.create_element("GBAOX10").write_inner_content(|w| {
        w.create_element("ORDERLIST").write_inner_content(|w| {
            w.create_element("ORDER")
                .write_inner_content(|w| fields(w, "ORDER", head, &config.extra_order_tags))?;
            w.create_element("ORDERLINES").write_inner_content(|w| {
                for line in lines {
                    w.create_element("ORDERLINE").write_inner_content(|w| {
                        fields(w, "ORDERLINE", line, &config.extra_line_tags)
                    })?;
                }
                Ok(())
            })?;
            Ok(())
        })?;
        Ok(())
    })?;
    let text = String::from_utf8(w.into_inner()).map_err(std::io::Error::other)?;
    // Every character is ISO-8859-1 by now (`latin1`), one byte each.
    text.chars()
        .map(|c| u8::try_from(c as u32).map_err(std::io::Error::other))
        .collect()
}
