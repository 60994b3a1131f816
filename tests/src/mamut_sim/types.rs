//! The SQL Server types the stand-in speaks, how SQLite's declared column types map onto them,
//! and their TDS encodings in COLMETADATA and ROW tokens.

use bytes::{BufMut, BytesMut};
use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use rusqlite::types::ValueRef;
use rust_decimal::Decimal;
use tds_protocol::RpcTypeInfo;

/// Latin1_General_CI_AS.
const COLLATION: [u8; 5] = [0x09, 0x04, 0xD0, 0x00, 0x34];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    Int,
    BigInt,
    Bit,
    Float,
    Decimal {
        precision: u8,
        scale: u8,
    },
    NVarChar,
    DateTime2,
    VarBinary,
    /// SQL Server's rowversion: binary(8), emulated by an integer counter.
    RowVersion,
}

/// The SQLite declared type the stand-in gives DECIMAL/NUMERIC columns: TEXT affinity keeps
/// the exact digits.
pub const DECIMAL_DECL: &str = "DECIMAL_TEXT";
/// The SQLite declared type of a rowversion column (INTEGER affinity).
pub const ROWVERSION_DECL: &str = "ROWVERSION_INT";

impl SqlType {
    /// From a SQLite declared type, or from a sample value when there is none (expressions).
    pub fn from_decl(decl: Option<&str>, sample: Option<ValueRef<'_>>) -> Self {
        let Some(decl) = decl else {
            return match sample {
                Some(ValueRef::Integer(_)) => SqlType::BigInt,
                Some(ValueRef::Real(_)) => SqlType::Float,
                Some(ValueRef::Blob(_)) => SqlType::VarBinary,
                _ => SqlType::NVarChar,
            };
        };
        let upper = decl.to_ascii_uppercase();
        if upper.starts_with(ROWVERSION_DECL) || upper.starts_with("ROWVERSION") {
            SqlType::RowVersion
        } else if upper.starts_with("BIGINT") {
            SqlType::BigInt
        } else if upper.starts_with("INT")
            || upper.starts_with("SMALLINT")
            || upper.starts_with("TINYINT")
        {
            SqlType::Int
        } else if upper.starts_with("BIT") {
            SqlType::Bit
        } else if upper.starts_with(DECIMAL_DECL)
            || upper.starts_with("DECIMAL")
            || upper.starts_with("NUMERIC")
        {
            let (precision, scale) = precision_scale(&upper);
            SqlType::Decimal { precision, scale }
        } else if upper.starts_with("FLOAT")
            || upper.starts_with("REAL")
            || upper.starts_with("DOUBLE")
        {
            SqlType::Float
        } else if upper.starts_with("DATETIME") || upper.starts_with("DATE") {
            SqlType::DateTime2
        } else if upper.contains("BINARY") || upper.starts_with("BLOB") {
            SqlType::VarBinary
        } else {
            SqlType::NVarChar
        }
    }

    pub fn put_type_info(self, out: &mut BytesMut) {
        let info = match self {
            SqlType::Int => RpcTypeInfo {
                max_length: Some(4),
                ..RpcTypeInfo::int()
            },
            SqlType::BigInt => RpcTypeInfo {
                max_length: Some(8),
                ..RpcTypeInfo::bigint()
            },
            SqlType::Bit => RpcTypeInfo::bit(),
            SqlType::Float => RpcTypeInfo::float(),
            SqlType::Decimal { precision, scale } => RpcTypeInfo {
                max_length: Some(u16::from(decimal_len(precision))),
                ..RpcTypeInfo::decimal(precision, scale)
            },
            SqlType::NVarChar => RpcTypeInfo {
                collation: Some(COLLATION),
                ..RpcTypeInfo::nvarchar_max()
            },
            SqlType::DateTime2 => RpcTypeInfo::datetime2(7),
            SqlType::VarBinary => RpcTypeInfo::varbinary_max(),
            SqlType::RowVersion => RpcTypeInfo::binary(8),
        };
        info.encode(out);
    }

    /// Writes one value of this type as it appears in a ROW token.
    pub fn put_value(self, out: &mut BytesMut, value: ValueRef<'_>) -> Result<(), String> {
        if matches!(value, ValueRef::Null) {
            match self {
                SqlType::NVarChar | SqlType::VarBinary => out.put_u64_le(u64::MAX),
                SqlType::RowVersion => out.put_u16_le(0xFFFF),
                _ => out.put_u8(0),
            }
            return Ok(());
        }
        match self {
            SqlType::Int => {
                let v = i32::try_from(integer(value)?).map_err(|_| "value out of range for int")?;
                out.put_u8(4);
                out.put_i32_le(v);
            }
            SqlType::BigInt => {
                out.put_u8(8);
                out.put_i64_le(integer(value)?);
            }
            SqlType::Bit => {
                out.put_u8(1);
                out.put_u8(u8::from(integer(value)? != 0));
            }
            SqlType::Float => {
                out.put_u8(8);
                out.put_f64_le(match value {
                    ValueRef::Real(r) => r,
                    other => integer(other)? as f64,
                });
            }
            SqlType::Decimal { precision, scale } => put_decimal(out, value, precision, scale)?,
            SqlType::NVarChar => {
                let text = match value {
                    ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                    ValueRef::Integer(i) => i.to_string(),
                    ValueRef::Real(r) => r.to_string(),
                    ValueRef::Blob(_) | ValueRef::Null => {
                        return Err("binary value in a text column".into());
                    }
                };
                put_plp(out, &super::wire::ucs2(&text));
            }
            SqlType::VarBinary => match value {
                ValueRef::Blob(b) | ValueRef::Text(b) => put_plp(out, b),
                _ => return Err("a number in a binary column".into()),
            },
            SqlType::RowVersion => {
                out.put_u16_le(8);
                out.put_slice(&integer(value)?.to_be_bytes());
            }
            SqlType::DateTime2 => {
                let text = match value {
                    ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                    _ => return Err("datetime2 values must be stored as text".into()),
                };
                let at = parse_datetime(&text)?;
                out.put_u8(8);
                let ticks = u64::from(at.time().num_seconds_from_midnight()) * 10_000_000
                    + u64::from(at.time().nanosecond() / 100);
                out.put_slice(&ticks.to_le_bytes()[..5]);
                let days = at.date().num_days_from_ce() - 1;
                out.put_slice(&(days as u32).to_le_bytes()[..3]);
            }
        }
        Ok(())
    }
}

fn integer(value: ValueRef<'_>) -> Result<i64, String> {
    match value {
        ValueRef::Integer(i) => Ok(i),
        ValueRef::Text(t) => String::from_utf8_lossy(t)
            .trim()
            .parse()
            .map_err(|_| "not an integer".to_string()),
        ValueRef::Real(r) if r.fract() == 0.0 => Ok(r as i64),
        _ => Err("not an integer".into()),
    }
}

fn precision_scale(decl: &str) -> (u8, u8) {
    let inner = decl
        .split_once('(')
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(inner, _)| inner);
    let mut numbers = inner
        .unwrap_or_default()
        .split(',')
        .map(|n| n.trim().parse::<u8>().ok());
    let precision = numbers.next().flatten().unwrap_or(18).clamp(1, 38);
    let scale = numbers.next().flatten().unwrap_or(0).min(precision);
    (precision, scale)
}

fn decimal_len(precision: u8) -> u8 {
    match precision {
        0..=9 => 5,
        10..=19 => 9,
        20..=28 => 13,
        _ => 17,
    }
}

fn put_decimal(
    out: &mut BytesMut,
    value: ValueRef<'_>,
    precision: u8,
    scale: u8,
) -> Result<(), String> {
    let mut decimal: Decimal = match value {
        ValueRef::Text(t) => String::from_utf8_lossy(t)
            .trim()
            .parse()
            .map_err(|e| format!("not a decimal: {e}"))?,
        ValueRef::Integer(i) => Decimal::from(i),
        ValueRef::Real(r) => Decimal::try_from(r).map_err(|e| e.to_string())?,
        _ => return Err("not a decimal".into()),
    };
    decimal.rescale(u32::from(scale));
    let len = decimal_len(precision);
    let mantissa = decimal.mantissa();
    out.put_u8(len);
    out.put_u8(u8::from(mantissa >= 0));
    out.put_slice(&mantissa.unsigned_abs().to_le_bytes()[..usize::from(len - 1)]);
    Ok(())
}

/// PLP: total length, one chunk, terminator.
fn put_plp(out: &mut BytesMut, bytes: &[u8]) {
    out.put_u64_le(bytes.len() as u64);
    if !bytes.is_empty() {
        out.put_u32_le(bytes.len() as u32);
        out.put_slice(bytes);
    }
    out.put_u32_le(0);
}

pub fn parse_datetime(text: &str) -> Result<NaiveDateTime, String> {
    let text = text.trim();
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
    ] {
        if let Ok(at) = NaiveDateTime::parse_from_str(text.trim_end_matches('Z'), format) {
            return Ok(at);
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(|d| d.and_time(NaiveTime::MIN))
        .map_err(|_| format!("{text:?} is not a datetime"))
}

/// The text the stand-in stores a datetime2 as.
pub fn datetime_text(at: NaiveDateTime) -> String {
    format!(
        "{}.{:07}",
        at.format("%Y-%m-%d %H:%M:%S"),
        at.nanosecond() / 100
    )
}

/// A DATETIME2 wire value (time ticks at `scale`, then 3 bytes of days since 0001-01-01).
pub fn datetime2_text(bytes: &[u8], scale: u8) -> Result<String, String> {
    if bytes.len() < 4 {
        return Err("datetime2 too short".into());
    }
    let (time, date) = bytes.split_at(bytes.len() - 3);
    let mut raw = [0u8; 8];
    raw[..time.len()].copy_from_slice(time);
    let ticks = u64::from_le_bytes(raw);
    let nanos_per_tick = 10u64.pow(9 - u32::from(scale.min(7)));
    let nanos = ticks * nanos_per_tick;
    let time = NaiveTime::from_num_seconds_from_midnight_opt(
        (nanos / 1_000_000_000) as u32,
        (nanos % 1_000_000_000) as u32,
    )
    .ok_or("datetime2 time out of range")?;
    let date = date_from(date)?;
    Ok(datetime_text(date.and_time(time)))
}

pub fn date_text(bytes: &[u8]) -> Result<String, String> {
    Ok(datetime_text(date_from(bytes)?.and_time(NaiveTime::MIN)))
}

fn date_from(bytes: &[u8]) -> Result<NaiveDate, String> {
    if bytes.len() != 3 {
        return Err("date must be 3 bytes".into());
    }
    let days = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], 0]);
    NaiveDate::from_num_days_from_ce_opt(days as i32 + 1).ok_or_else(|| "date out of range".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_types_map_onto_sql_server_types() {
        assert_eq!(SqlType::from_decl(Some("INT"), None), SqlType::Int);
        assert_eq!(
            SqlType::from_decl(Some("DECIMAL_TEXT(19, 4)"), None),
            SqlType::Decimal {
                precision: 19,
                scale: 4
            }
        );
        assert_eq!(
            SqlType::from_decl(Some("NVARCHAR(100)"), None),
            SqlType::NVarChar
        );
        assert_eq!(
            SqlType::from_decl(Some("ROWVERSION_INT"), None),
            SqlType::RowVersion
        );
        assert_eq!(
            SqlType::from_decl(None, Some(ValueRef::Integer(1))),
            SqlType::BigInt
        );
    }

    #[test]
    fn datetime2_wire_values_decode() {
        // 2026-11-23 10:14:12 at scale 7.
        let at = NaiveDate::from_ymd_opt(2026, 11, 23)
            .and_then(|d| d.and_hms_opt(10, 14, 12))
            .expect("valid");
        let ticks: u64 = u64::from(at.time().num_seconds_from_midnight()) * 10_000_000;
        let days = (at.date().num_days_from_ce() - 1) as u32;
        let mut bytes = ticks.to_le_bytes()[..5].to_vec();
        bytes.extend_from_slice(&days.to_le_bytes()[..3]);
        assert_eq!(
            datetime2_text(&bytes, 7).expect("decodes"),
            "2026-11-23 10:14:12.0000000"
        );
    }
}
