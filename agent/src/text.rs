//! Reading a text file the way Windows tools write it: UTF-8 (with or without a byte order
//! mark) or UTF-16 with its byte order mark. Used for `agent.toml` and `relay.ca_file`.

/// A file's text: UTF-8 (a byte order mark is left for the reader to skip; the TOML parser
/// does), or UTF-16 with its byte order mark, as Windows PowerShell 5.1's `>` and `Out-File` and
/// Notepad's "Unicode" write it.
pub(crate) fn decode_text(bytes: &[u8]) -> Result<String, String> {
    let utf16 = |rest: &[u8], unit: fn([u8; 2]) -> u16| {
        if !rest.len().is_multiple_of(2) {
            return Err("the file is UTF-16 with an odd number of bytes (cut off?)".to_owned());
        }
        let units: Vec<u16> = rest.chunks_exact(2).map(|c| unit([c[0], c[1]])).collect();
        String::from_utf16(&units)
            .map_err(|_| "the file is UTF-16 but not valid UTF-16: save it as UTF-8".to_owned())
    };
    match bytes {
        [0xFF, 0xFE, rest @ ..] => utf16(rest, u16::from_le_bytes),
        [0xFE, 0xFF, rest @ ..] => utf16(rest, u16::from_be_bytes),
        _ => String::from_utf8(bytes.to_vec()).map_err(|e| {
            format!(
                "the file is not UTF-8 (invalid byte at offset {}): save it as UTF-8 \
                 (Notepad: Save as, Encoding UTF-8)",
                e.utf8_error().valid_up_to()
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::decode_text;

    #[test]
    fn a_configuration_saved_as_utf16_or_with_a_bom_reads_as_utf8_would() {
        let text = "[relay]\nurl = \"wss://r\u{e9}lay.example\"\n";
        let mut le = vec![0xFF, 0xFE];
        le.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
        let mut be = vec![0xFE, 0xFF];
        be.extend(text.encode_utf16().flat_map(u16::to_be_bytes));
        assert_eq!(decode_text(&le).as_deref(), Ok(text));
        assert_eq!(decode_text(&be).as_deref(), Ok(text));
        assert_eq!(decode_text(text.as_bytes()).as_deref(), Ok(text));
        let with_bom = [b"\xEF\xBB\xBF".as_slice(), text.as_bytes()].concat();
        let parsed: toml::Table = toml::from_str(&decode_text(&with_bom).unwrap()).unwrap();
        assert_eq!(
            parsed["relay"]["url"].as_str(),
            Some("wss://r\u{e9}lay.example")
        );
        let latin1 = b"[relay]\nurl = \"wss://r\xE9lay\"\n";
        let e = decode_text(latin1).unwrap_err();
        assert!(e.contains("not UTF-8") && e.contains("offset 22"), "{e}");
        assert!(
            decode_text(&le[..le.len() - 1])
                .unwrap_err()
                .contains("odd number")
        );
    }
}
