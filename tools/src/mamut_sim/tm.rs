//! Transaction-manager requests (packet type 0x0E, MS-TDS 2.2.6.9): drivers such as
//! python-tds and tiberius begin, commit, roll back and save transactions with these instead
//! of T-SQL. Each becomes the T-SQL SQL Server runs for it (`BEGIN TRAN`, `COMMIT`, `ROLLBACK`,
//! `SAVE TRAN`), executed as a batch through the session, so the ENVCHANGEs, errors and DONE
//! are the engine's. Distributed transactions (MSDTC) are refused as by a server without it.

use bytes::{BufMut, BytesMut};

const TM_GET_DTC_ADDRESS: u16 = 0;
const TM_PROPAGATE_XACT: u16 = 1;
const TM_BEGIN_XACT: u16 = 5;
const TM_PROMOTE_XACT: u16 = 6;
const TM_COMMIT_XACT: u16 = 7;
const TM_ROLLBACK_XACT: u16 = 8;
const TM_SAVE_XACT: u16 = 9;

/// XACT_FLAGS' fBeginXact: begin a new transaction once this one is committed or rolled back.
const BEGIN_XACT: u8 = 0x01;

/// A transaction-manager request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TmRequest {
    Begin {
        isolation: u8,
        name: String,
    },
    Commit {
        name: String,
        then_begin: Option<(u8, String)>,
    },
    Rollback {
        name: String,
        then_begin: Option<(u8, String)>,
    },
    Save {
        name: String,
    },
    /// TM_GET_DTC_ADDRESS, TM_PROPAGATE_XACT, TM_PROMOTE_XACT: distributed transactions.
    Distributed(u16),
}

/// An error as SQL Server numbers it: `(number, class, message)`.
pub type TmError = (u32, u8, String);

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.at.checked_add(n).ok_or("length overflow")?;
        let bytes = self
            .data
            .get(self.at..end)
            .ok_or("transaction-manager request truncated")?;
        self.at = end;
        Ok(bytes)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    /// An optional trailing byte: absent in requests from older clients.
    fn u8_or_zero(&mut self) -> u8 {
        self.u8().unwrap_or(0)
    }
    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// B_VARCHAR: a length in characters, then UTF-16LE.
    fn b_varchar(&mut self) -> Result<String, String> {
        let chars = usize::from(self.u8()?);
        let units: Vec<u16> = self
            .take(chars * 2)?
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16(&units).map_err(|_| "transaction name is not UTF-16".to_string())
    }
}

/// Decodes a transaction-manager request: ALL_HEADERS, RequestType, then its payload.
pub fn parse(data: &[u8]) -> Result<TmRequest, String> {
    let mut r = Reader { data, at: 0 };
    let headers = r.u32()? as usize;
    r.take(headers.checked_sub(4).ok_or("bad ALL_HEADERS length")?)?;
    let kind = r.u16()?;
    Ok(match kind {
        TM_BEGIN_XACT => TmRequest::Begin {
            isolation: r.u8()?,
            name: r.b_varchar()?,
        },
        TM_COMMIT_XACT => TmRequest::Commit {
            name: r.b_varchar()?,
            then_begin: then_begin(&mut r)?,
        },
        TM_ROLLBACK_XACT => TmRequest::Rollback {
            name: r.b_varchar()?,
            then_begin: then_begin(&mut r)?,
        },
        TM_SAVE_XACT => TmRequest::Save {
            name: r.b_varchar()?,
        },
        TM_GET_DTC_ADDRESS | TM_PROPAGATE_XACT | TM_PROMOTE_XACT => TmRequest::Distributed(kind),
        other => return Err(format!("unknown transaction-manager request type {other}")),
    })
}

/// XACT_FLAGS and, with fBeginXact, the next transaction's isolation level and name.
fn then_begin(r: &mut Reader<'_>) -> Result<Option<(u8, String)>, String> {
    if r.u8_or_zero() & BEGIN_XACT == 0 {
        return Ok(None);
    }
    Ok(Some((r.u8()?, r.b_varchar()?)))
}

impl TmRequest {
    /// The T-SQL batch SQL Server runs for the request, or the error it answers with.
    pub fn sql(&self) -> Result<String, TmError> {
        Ok(match self {
            TmRequest::Begin { isolation, name } => begin(*isolation, name)?,
            TmRequest::Commit { then_begin, .. } => {
                // A name on COMMIT is ignored by SQL Server; only the nesting level counts.
                with_begin("COMMIT TRAN".to_string(), then_begin)?
            }
            TmRequest::Rollback { name, then_begin } => {
                with_begin(named("ROLLBACK TRAN", name), then_begin)?
            }
            TmRequest::Save { name } if name.is_empty() => {
                return Err((
                    102,
                    15,
                    "Incorrect syntax near 'SAVE TRAN': a savepoint needs a name.".into(),
                ));
            }
            TmRequest::Save { name } => named("SAVE TRAN", name),
            TmRequest::Distributed(_) => {
                return Err((
                    8501,
                    16,
                    "MSDTC on server 'mamut-sim' is unavailable.".into(),
                ));
            }
        })
    }
}

fn with_begin(sql: String, then_begin: &Option<(u8, String)>) -> Result<String, TmError> {
    Ok(match then_begin {
        None => sql,
        Some((isolation, name)) => format!("{sql}; {}", begin(*isolation, name)?),
    })
}

fn begin(isolation: u8, name: &str) -> Result<String, TmError> {
    let level = match isolation {
        0 => return Ok(named("BEGIN TRAN", name)),
        1 => "READ UNCOMMITTED",
        2 => "READ COMMITTED",
        3 => "REPEATABLE READ",
        4 => "SERIALIZABLE",
        5 => "SNAPSHOT",
        other => {
            return Err((
                102,
                15,
                format!("Unknown isolation level {other} in a transaction-manager request."),
            ));
        }
    };
    Ok(format!(
        "SET TRANSACTION ISOLATION LEVEL {level}; {}",
        named("BEGIN TRAN", name)
    ))
}

/// `statement name`, the name bracket-quoted unless it is a plain identifier.
fn named(statement: &str, name: &str) -> String {
    if name.is_empty() {
        return statement.to_string();
    }
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_alphanumeric() || c == '_');
    if plain {
        format!("{statement} {name}")
    } else {
        format!("{statement} [{}]", name.replace(']', "]]"))
    }
}

/// An SQL batch message carrying `sql` (ALL_HEADERS with a transaction descriptor, then the
/// UTF-16 text), for the engine's own batch decoding.
pub fn batch_payload(sql: &str) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.put_u32_le(22); // ALL_HEADERS total length
    out.put_u32_le(18); // this header's length
    out.put_u16_le(2); // transaction descriptor header
    out.put_u64_le(0);
    out.put_u32_le(1); // outstanding requests
    for unit in sql.encode_utf16() {
        out.put_u16_le(unit);
    }
    out.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut out = batch_payload("")[..22].to_vec();
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(body);
        out
    }

    fn b_varchar(text: &str) -> Vec<u8> {
        let mut out = vec![text.encode_utf16().count() as u8];
        out.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
        out
    }

    #[test]
    fn begin_commit_rollback_and_save_become_t_sql() {
        let cases = [
            (request(5, &[0, 0]), "BEGIN TRAN"),
            (
                request(5, &[[2].as_slice(), &b_varchar("t1")].concat()),
                "SET TRANSACTION ISOLATION LEVEL READ COMMITTED; BEGIN TRAN t1",
            ),
            (request(7, &[0, 0]), "COMMIT TRAN"),
            // python-tds without autocommit: commit and begin the next one at once.
            (request(7, &[0, 1, 0, 0]), "COMMIT TRAN; BEGIN TRAN"),
            (request(8, &[0]), "ROLLBACK TRAN"),
            (
                request(8, &[b_varchar("sp 1"), vec![0]].concat()),
                "ROLLBACK TRAN [sp 1]",
            ),
            (request(9, &b_varchar("sp")), "SAVE TRAN sp"),
        ];
        for (bytes, sql) in cases {
            let parsed = parse(&bytes).expect("parses");
            assert_eq!(parsed.sql().as_deref(), Ok(sql), "{parsed:?}");
        }
    }

    #[test]
    fn distributed_transactions_are_refused_with_an_error() {
        let parsed = parse(&request(0, &[0, 0])).expect("parses");
        assert_eq!(parsed, TmRequest::Distributed(0));
        assert!(matches!(parsed.sql(), Err((8501, 16, _))));
    }

    #[test]
    fn truncated_or_unknown_requests_are_errors_not_panics() {
        let whole = request(5, &[[2].as_slice(), &b_varchar("name")].concat());
        for len in 0..whole.len() {
            let _ = parse(&whole[..len]);
        }
        assert!(parse(&request(42, &[])).is_err());
        assert!(parse(&[0xFF, 0xFF, 0xFF, 0xFF]).is_err());
    }

    #[test]
    fn the_batch_payload_carries_the_text_after_all_headers() {
        let payload = batch_payload("BEGIN TRAN");
        assert_eq!(
            u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]),
            22
        );
        let text: Vec<u16> = payload[22..]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(String::from_utf16_lossy(&text), "BEGIN TRAN");
    }
}
