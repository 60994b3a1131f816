//! T-SQL tokens: words, `[quoted]` and `"quoted"` identifiers, `N'strings'`, numbers, `0x`
//! binary literals, `@variables`, `@@globals`, operators. Comments are dropped. Anything else
//! is SQL Server's error 102 (or 105 for an unclosed string), so the batch never runs.

use super::exec::SqlError;

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// An unquoted word: a keyword or an identifier (compared case-insensitively).
    Word(String),
    /// A `[bracketed]` or `"double-quoted"` identifier.
    Quoted(String),
    Str {
        text: String,
        national: bool,
    },
    Num(String),
    Hex(Vec<u8>),
    /// `@name`, with the `@`.
    Var(String),
    /// `@@NAME`, upper-cased, without the `@@`.
    Global(String),
    /// An operator or punctuation: `( ) , . ; = < > <= >= <> != !< !> + - * / %`.
    Op(&'static str),
}

impl Tok {
    /// The word upper-cased, when this is an unquoted word.
    pub fn word(&self) -> Option<String> {
        match self {
            Tok::Word(w) => Some(w.to_ascii_uppercase()),
            _ => None,
        }
    }

    pub fn is_word(&self, keyword: &str) -> bool {
        matches!(self, Tok::Word(w) if w.eq_ignore_ascii_case(keyword))
    }

    pub fn is_op(&self, op: &str) -> bool {
        matches!(self, Tok::Op(o) if *o == op)
    }

    /// How SQL Server would quote this token in "Incorrect syntax near '…'".
    pub fn text(&self) -> String {
        match self {
            Tok::Word(w) | Tok::Quoted(w) | Tok::Num(w) | Tok::Var(w) => w.clone(),
            Tok::Str { text, .. } => text.clone(),
            Tok::Hex(b) => format!(
                "0x{}",
                b.iter().map(|x| format!("{x:02X}")).collect::<String>()
            ),
            Tok::Global(g) => format!("@@{g}"),
            Tok::Op(o) => (*o).to_owned(),
        }
    }
}

const OPERATORS: [&str; 20] = [
    "<=", ">=", "<>", "!=", "!<", "!>", "(", ")", ",", ".", ";", "=", "<", ">", "+", "-", "*", "/",
    "%", "~",
];

pub fn syntax_error(near: &str) -> SqlError {
    SqlError::new(102, 15, format!("Incorrect syntax near '{near}'."))
}

/// Splits T-SQL text into tokens.
pub fn tokens(sql: &str) -> Result<Vec<Tok>, SqlError> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '-' && at(i + 1) == '-' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && at(i + 1) == '/') {
                i += 1;
            }
            i += 2;
        } else if c == '\'' || ((c == 'N' || c == 'n') && at(i + 1) == '\'') {
            let national = c != '\'';
            if national {
                i += 1;
            }
            i += 1;
            let start = i;
            let mut text = String::new();
            loop {
                if i >= chars.len() {
                    let rest: String = chars[start..].iter().collect();
                    return Err(SqlError::new(
                        105,
                        15,
                        format!("Unclosed quotation mark after the character string '{rest}'."),
                    ));
                }
                if chars[i] == '\'' {
                    if at(i + 1) == '\'' {
                        text.push('\'');
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                text.push(chars[i]);
                i += 1;
            }
            out.push(Tok::Str { text, national });
        } else if c == '[' || c == '"' {
            let close = if c == '[' { ']' } else { '"' };
            i += 1;
            let mut name = String::new();
            loop {
                if i >= chars.len() {
                    return Err(SqlError::new(
                        105,
                        15,
                        format!("Unclosed quotation mark after the character string '{name}'."),
                    ));
                }
                if chars[i] == close {
                    if at(i + 1) == close {
                        name.push(close);
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                name.push(chars[i]);
                i += 1;
            }
            out.push(Tok::Quoted(name));
        } else if c == '0' && (at(i + 1) == 'x' || at(i + 1) == 'X') {
            i += 2;
            let start = i;
            while at(i).is_ascii_hexdigit() {
                i += 1;
            }
            let hex: String = chars[start..i].iter().collect();
            let padded = if hex.len() % 2 == 1 {
                format!("0{hex}")
            } else {
                hex
            };
            let bytes = (0..padded.len())
                .step_by(2)
                .map(|k| u8::from_str_radix(&padded[k..k + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| syntax_error(&padded))?;
            out.push(Tok::Hex(bytes));
        } else if c.is_ascii_digit() || (c == '.' && at(i + 1).is_ascii_digit()) {
            let start = i;
            while at(i).is_ascii_digit() {
                i += 1;
            }
            if at(i) == '.' {
                i += 1;
                while at(i).is_ascii_digit() {
                    i += 1;
                }
            }
            if (at(i) == 'e' || at(i) == 'E')
                && (at(i + 1).is_ascii_digit()
                    || ((at(i + 1) == '+' || at(i + 1) == '-') && at(i + 2).is_ascii_digit()))
            {
                i += 2;
                while at(i).is_ascii_digit() {
                    i += 1;
                }
            }
            out.push(Tok::Num(chars[start..i].iter().collect()));
        } else if c == '@' {
            let global = at(i + 1) == '@';
            let start = if global { i + 2 } else { i + 1 };
            let mut end = start;
            while at(end).is_alphanumeric() || matches!(at(end), '_' | '#' | '$' | '@') {
                end += 1;
            }
            if end == start {
                return Err(syntax_error("@"));
            }
            let name: String = chars[start..end].iter().collect();
            out.push(if global {
                Tok::Global(name.to_ascii_uppercase())
            } else {
                Tok::Var(format!("@{name}"))
            });
            i = end;
        } else if c.is_alphabetic() || c == '_' || c == '#' {
            let start = i;
            while at(i).is_alphanumeric() || matches!(at(i), '_' | '#' | '$' | '@') {
                i += 1;
            }
            out.push(Tok::Word(chars[start..i].iter().collect()));
        } else {
            let two: String = [c, at(i + 1)].iter().collect();
            if let Some(op) = OPERATORS.iter().find(|o| o.len() == 2 && **o == two) {
                out.push(Tok::Op(op));
                i += 2;
            } else if let Some(op) = OPERATORS.iter().find(|o| o.len() == 1 && o.starts_with(c)) {
                out.push(Tok::Op(op));
                i += 1;
            } else {
                return Err(syntax_error(&c.to_string()));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_of_a_t_sql_statement() {
        let toks = tokens("SELECT [a b], N'it''s' -- c\n FROM t WHERE x <= @P1 + 0x0A /* x */")
            .expect("lexes");
        assert_eq!(
            toks,
            vec![
                Tok::Word("SELECT".into()),
                Tok::Quoted("a b".into()),
                Tok::Op(","),
                Tok::Str {
                    text: "it's".into(),
                    national: true
                },
                Tok::Word("FROM".into()),
                Tok::Word("t".into()),
                Tok::Word("WHERE".into()),
                Tok::Word("x".into()),
                Tok::Op("<="),
                Tok::Var("@P1".into()),
                Tok::Op("+"),
                Tok::Hex(vec![10]),
            ]
        );
    }

    #[test]
    fn an_unclosed_string_is_error_105() {
        match tokens("SELECT 'abc") {
            Err(e) => assert_eq!(e.number, 105),
            Ok(t) => panic!("{t:?}"),
        }
    }
}
