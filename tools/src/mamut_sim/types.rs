//! The SQL Server types the stand-in speaks: how a column's declared type (recorded at
//! `CREATE TABLE`) or a PostgreSQL result type maps onto them, values read from PostgreSQL,
//! and their TDS encodings in COLMETADATA and ROW tokens.

use std::error::Error;

use bytes::{BufMut, BytesMut};
use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use postgres::types::{FromSql, Type};

/// Latin1_General_CI_AS.
pub const COLLATION: [u8; 5] = [0x09, 0x04, 0xD0, 0x00, 0x34];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    TinyInt,
    SmallInt,
    Int,
    BigInt,
    Bit,
    Real,
    Float,
    Decimal {
        precision: u8,
        scale: u8,
    },
    /// `nvarchar(n)`; `None` is `nvarchar(max)`.
    NVarChar(Option<u16>),
    /// `varchar(n)`; `None` is `varchar(max)`.
    VarChar(Option<u16>),
    DateTime2(u8),
    Date,
    Binary(u16),
    /// `varbinary(n)`; `None` is `varbinary(max)`.
    VarBinary(Option<u16>),
    /// `rowversion`: `binary(8)` on the wire.
    RowVersion,
}

impl SqlType {
    /// From the names recorded in the stand-in's column metadata (SQL Server's spelling, as
    /// `INFORMATION_SCHEMA.COLUMNS.DATA_TYPE` has it).
    pub fn from_recorded(
        data_type: &str,
        length: Option<i32>,
        precision: Option<i32>,
        scale: Option<i32>,
    ) -> Self {
        let text_len = |limit: i32| match length {
            Some(n) if n > 0 && n <= limit => Some(n as u16),
            _ => None,
        };
        match data_type {
            "tinyint" => SqlType::TinyInt,
            "smallint" => SqlType::SmallInt,
            "int" => SqlType::Int,
            "bigint" => SqlType::BigInt,
            "bit" => SqlType::Bit,
            "real" => SqlType::Real,
            "float" => SqlType::Float,
            "decimal" | "numeric" => SqlType::Decimal {
                precision: precision.unwrap_or(18).clamp(1, 38) as u8,
                scale: scale.unwrap_or(0).clamp(0, 38) as u8,
            },
            "nvarchar" => SqlType::NVarChar(text_len(4000)),
            "varchar" => SqlType::VarChar(text_len(8000)),
            "datetime2" | "datetime" => SqlType::DateTime2(scale.unwrap_or(7).clamp(0, 7) as u8),
            "date" => SqlType::Date,
            "binary" => SqlType::Binary(text_len(8000).unwrap_or(8000)),
            "varbinary" => SqlType::VarBinary(text_len(8000)),
            "timestamp" | "rowversion" => SqlType::RowVersion,
            _ => SqlType::NVarChar(None),
        }
    }

    /// From a PostgreSQL result column that is no table column: its type and type modifier,
    /// and the values (a numeric without a declared precision gets decimal(38, s) with s the
    /// largest scale among the values).
    pub fn from_pg(ty: &Type, typmod: i32, values: &[&PgValue]) -> Result<Self, String> {
        Ok(match *ty {
            Type::INT2 => SqlType::SmallInt,
            Type::INT4 | Type::OID => SqlType::Int,
            Type::INT8 => SqlType::BigInt,
            Type::BOOL => SqlType::Bit,
            Type::FLOAT4 => SqlType::Real,
            Type::FLOAT8 => SqlType::Float,
            Type::NUMERIC if typmod >= 4 => {
                let m = typmod - 4;
                SqlType::Decimal {
                    precision: ((m >> 16) & 0xFFFF).clamp(1, 38) as u8,
                    scale: (m & 0xFFFF).clamp(0, 38) as u8,
                }
            }
            Type::NUMERIC => {
                let scale = values
                    .iter()
                    .filter_map(|v| match v {
                        PgValue::Numeric { scale, .. } => Some(*scale),
                        _ => None,
                    })
                    .max()
                    .unwrap_or(0)
                    .min(38) as u8;
                SqlType::Decimal {
                    precision: 38,
                    scale,
                }
            }
            Type::VARCHAR if (5..=4004).contains(&typmod) => {
                SqlType::NVarChar(Some((typmod - 4) as u16))
            }
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN | Type::CHAR => {
                SqlType::NVarChar(None)
            }
            Type::BYTEA => SqlType::VarBinary(None),
            Type::TIMESTAMP | Type::TIMESTAMPTZ => SqlType::DateTime2(7),
            Type::DATE => SqlType::Date,
            ref other => {
                return Err(format!(
                    "the stand-in cannot send a result column of PostgreSQL type {other}"
                ));
            }
        })
    }

    /// TYPE_INFO in COLMETADATA.
    pub fn put_type_info(self, out: &mut BytesMut) {
        match self {
            SqlType::TinyInt => out.put_slice(&[0x26, 1]),
            SqlType::SmallInt => out.put_slice(&[0x26, 2]),
            SqlType::Int => out.put_slice(&[0x26, 4]),
            SqlType::BigInt => out.put_slice(&[0x26, 8]),
            SqlType::Bit => out.put_slice(&[0x68, 1]),
            SqlType::Real => out.put_slice(&[0x6D, 4]),
            SqlType::Float => out.put_slice(&[0x6D, 8]),
            SqlType::Decimal { precision, scale } => {
                out.put_slice(&[0x6C, decimal_len(precision), precision, scale]);
            }
            SqlType::NVarChar(n) => {
                out.put_u8(0xE7);
                out.put_u16_le(n.map_or(0xFFFF, |n| n * 2));
                out.put_slice(&COLLATION);
            }
            SqlType::VarChar(n) => {
                out.put_u8(0xA7);
                out.put_u16_le(n.unwrap_or(0xFFFF));
                out.put_slice(&COLLATION);
            }
            SqlType::DateTime2(scale) => out.put_slice(&[0x2A, scale]),
            SqlType::Date => out.put_u8(0x28),
            SqlType::Binary(n) => {
                out.put_u8(0xAD);
                out.put_u16_le(n);
            }
            SqlType::RowVersion => {
                out.put_u8(0xAD);
                out.put_u16_le(8);
            }
            SqlType::VarBinary(n) => {
                out.put_u8(0xA5);
                out.put_u16_le(n.unwrap_or(0xFFFF));
            }
        }
    }

    fn is_plp(self) -> bool {
        matches!(
            self,
            SqlType::NVarChar(None) | SqlType::VarChar(None) | SqlType::VarBinary(None)
        )
    }

    /// Writes one value of this type as it appears in a ROW token. An error is SQL Server's
    /// message for a value that does not fit (error 8115).
    pub fn put_value(self, out: &mut BytesMut, value: &PgValue) -> Result<(), String> {
        if matches!(value, PgValue::Null) {
            match self {
                _ if self.is_plp() => out.put_u64_le(u64::MAX),
                SqlType::NVarChar(_)
                | SqlType::VarChar(_)
                | SqlType::Binary(_)
                | SqlType::VarBinary(_)
                | SqlType::RowVersion => out.put_u16_le(0xFFFF),
                _ => out.put_u8(0),
            }
            return Ok(());
        }
        let overflow = |name: &str| {
            format!("Arithmetic overflow error converting expression to data type {name}.")
        };
        match self {
            SqlType::TinyInt => {
                let v = u8::try_from(value.integer()?).map_err(|_| overflow("tinyint"))?;
                out.put_u8(1);
                out.put_u8(v);
            }
            SqlType::SmallInt => {
                let v = i16::try_from(value.integer()?).map_err(|_| overflow("smallint"))?;
                out.put_u8(2);
                out.put_i16_le(v);
            }
            SqlType::Int => {
                let v = i32::try_from(value.integer()?).map_err(|_| overflow("int"))?;
                out.put_u8(4);
                out.put_i32_le(v);
            }
            SqlType::BigInt => {
                let v = i64::try_from(value.integer()?).map_err(|_| overflow("bigint"))?;
                out.put_u8(8);
                out.put_i64_le(v);
            }
            SqlType::Bit => {
                out.put_u8(1);
                out.put_u8(u8::from(value.integer()? != 0));
            }
            SqlType::Real => {
                out.put_u8(4);
                out.put_f32_le(value.float()? as f32);
            }
            SqlType::Float => {
                out.put_u8(8);
                out.put_f64_le(value.float()?);
            }
            SqlType::Decimal { precision, scale } => {
                let (mantissa, from) = value.decimal()?;
                let mantissa = rescale(mantissa, from, u32::from(scale)).ok_or_else(|| {
                    "Arithmetic overflow error converting numeric to data type numeric.".to_string()
                })?;
                if mantissa.unsigned_abs() >= 10u128.pow(u32::from(precision)) {
                    return Err(
                        "Arithmetic overflow error converting numeric to data type numeric.".into(),
                    );
                }
                let len = decimal_len(precision);
                out.put_u8(len);
                out.put_u8(u8::from(mantissa >= 0));
                out.put_slice(&mantissa.unsigned_abs().to_le_bytes()[..usize::from(len - 1)]);
            }
            SqlType::NVarChar(n) => {
                let bytes = super::wire::ucs2(&value.text()?);
                put_var(out, &bytes, n.is_none());
            }
            SqlType::VarChar(n) => {
                let bytes: Vec<u8> = value
                    .text()?
                    .chars()
                    .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
                    .collect();
                put_var(out, &bytes, n.is_none());
            }
            SqlType::Binary(_) | SqlType::RowVersion => put_var(out, value.bytes()?, false),
            SqlType::VarBinary(n) => put_var(out, value.bytes()?, n.is_none()),
            SqlType::DateTime2(scale) => {
                let at = value.datetime()?;
                let len = time_len(scale);
                out.put_u8(len + 3);
                put_time(out, at.time(), scale);
                put_date(out, at.date());
            }
            SqlType::Date => {
                let at = value.datetime()?;
                out.put_u8(3);
                put_date(out, at.date());
            }
        }
        Ok(())
    }
}

fn put_var(out: &mut BytesMut, bytes: &[u8], plp: bool) {
    if plp {
        out.put_u64_le(bytes.len() as u64);
        if !bytes.is_empty() {
            out.put_u32_le(bytes.len() as u32);
            out.put_slice(bytes);
        }
        out.put_u32_le(0);
    } else {
        out.put_u16_le(bytes.len() as u16);
        out.put_slice(bytes);
    }
}

fn time_len(scale: u8) -> u8 {
    match scale {
        0..=2 => 3,
        3..=4 => 4,
        _ => 5,
    }
}

fn put_time(out: &mut BytesMut, time: NaiveTime, scale: u8) {
    let nanos =
        u64::from(time.num_seconds_from_midnight()) * 1_000_000_000 + u64::from(time.nanosecond());
    let ticks = nanos / 10u64.pow(9 - u32::from(scale.min(7)));
    out.put_slice(&ticks.to_le_bytes()[..usize::from(time_len(scale))]);
}

fn put_date(out: &mut BytesMut, date: NaiveDate) {
    let days = (date.num_days_from_ce() - 1).max(0) as u32;
    out.put_slice(&days.to_le_bytes()[..3]);
}

fn decimal_len(precision: u8) -> u8 {
    match precision {
        0..=9 => 5,
        10..=19 => 9,
        20..=28 => 13,
        _ => 17,
    }
}

/// `mantissa × 10^-from` as a mantissa at scale `to`, rounding half away from zero.
pub fn rescale(mantissa: i128, from: u32, to: u32) -> Option<i128> {
    if to >= from {
        mantissa.checked_mul(10i128.checked_pow(to - from)?)
    } else {
        let div = 10i128.checked_pow(from - to)?;
        let q = mantissa / div;
        let r = mantissa % div;
        Some(if r.abs() * 2 >= div {
            q + mantissa.signum()
        } else {
            q
        })
    }
}

/// A value read from PostgreSQL, decoded from its binary format by type.
#[derive(Debug, Clone, PartialEq)]
pub enum PgValue {
    Null,
    Int(i64),
    Float(f64),
    /// `mantissa × 10^-scale`.
    Numeric {
        mantissa: i128,
        scale: u32,
    },
    Text(String),
    Bytes(Vec<u8>),
    DateTime(NaiveDateTime),
}

impl PgValue {
    fn integer(&self) -> Result<i128, String> {
        match self {
            PgValue::Int(i) => Ok(i128::from(*i)),
            PgValue::Numeric { mantissa, scale } => {
                rescale(*mantissa, *scale, 0).ok_or_else(|| "number out of range".into())
            }
            PgValue::Float(f) => Ok(f.round() as i128),
            PgValue::Text(t) => t.trim().parse().map_err(|_| {
                format!(
                    "Conversion failed when converting the nvarchar value '{t}' to data type int."
                )
            }),
            _ => Err("a non-numeric value in a numeric column".into()),
        }
    }

    fn float(&self) -> Result<f64, String> {
        match self {
            PgValue::Float(f) => Ok(*f),
            PgValue::Int(i) => Ok(*i as f64),
            PgValue::Numeric { mantissa, scale } => {
                Ok(*mantissa as f64 / 10f64.powi(*scale as i32))
            }
            _ => Err("a non-numeric value in a float column".into()),
        }
    }

    fn decimal(&self) -> Result<(i128, u32), String> {
        match self {
            PgValue::Numeric { mantissa, scale } => Ok((*mantissa, *scale)),
            PgValue::Int(i) => Ok((i128::from(*i), 0)),
            PgValue::Float(f) => {
                let scaled = (f * 1e9).round();
                Ok((scaled as i128, 9))
            }
            _ => Err("a non-numeric value in a decimal column".into()),
        }
    }

    fn text(&self) -> Result<String, String> {
        Ok(match self {
            PgValue::Text(t) => t.clone(),
            PgValue::Int(i) => i.to_string(),
            PgValue::Float(f) => f.to_string(),
            PgValue::Numeric { mantissa, scale } => numeric_text(*mantissa, *scale),
            PgValue::DateTime(at) => at.format("%Y-%m-%d %H:%M:%S%.f").to_string(),
            PgValue::Bytes(_) | PgValue::Null => {
                return Err("a binary value in a text column".into());
            }
        })
    }

    fn bytes(&self) -> Result<&[u8], String> {
        match self {
            PgValue::Bytes(b) => Ok(b),
            _ => Err("a non-binary value in a binary column".into()),
        }
    }

    fn datetime(&self) -> Result<NaiveDateTime, String> {
        match self {
            PgValue::DateTime(at) => Ok(*at),
            PgValue::Text(t) => parse_datetime(t),
            _ => Err("a non-date value in a date column".into()),
        }
    }
}

pub fn numeric_text(mantissa: i128, scale: u32) -> String {
    let digits = mantissa.unsigned_abs().to_string();
    let sign = if mantissa < 0 { "-" } else { "" };
    let scale = scale as usize;
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{sign}{int}.{frac}")
}

fn pg_epoch() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2000, 1, 1)
        .unwrap_or_default()
        .and_time(NaiveTime::MIN)
}

type BoxError = Box<dyn Error + Sync + Send>;

fn be<const N: usize>(raw: &[u8]) -> Result<[u8; N], BoxError> {
    raw.try_into()
        .map_err(|_| format!("expected {N} bytes, got {}", raw.len()).into())
}

impl<'a> FromSql<'a> for PgValue {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(match *ty {
            Type::BOOL => PgValue::Int(i64::from(raw.first().copied().unwrap_or(0) != 0)),
            Type::INT2 => PgValue::Int(i64::from(i16::from_be_bytes(be(raw)?))),
            Type::INT4 => PgValue::Int(i64::from(i32::from_be_bytes(be(raw)?))),
            Type::OID => PgValue::Int(i64::from(u32::from_be_bytes(be(raw)?))),
            Type::INT8 => PgValue::Int(i64::from_be_bytes(be(raw)?)),
            Type::FLOAT4 => PgValue::Float(f64::from(f32::from_be_bytes(be(raw)?))),
            Type::FLOAT8 => PgValue::Float(f64::from_be_bytes(be(raw)?)),
            Type::NUMERIC => numeric(raw)?,
            Type::BYTEA => PgValue::Bytes(raw.to_vec()),
            Type::TIMESTAMP | Type::TIMESTAMPTZ => {
                let micros = i64::from_be_bytes(be(raw)?);
                PgValue::DateTime(pg_epoch() + chrono::Duration::microseconds(micros))
            }
            Type::DATE => {
                let days = i32::from_be_bytes(be(raw)?);
                PgValue::DateTime(pg_epoch() + chrono::Duration::days(i64::from(days)))
            }
            Type::CHAR => PgValue::Text(String::from_utf8_lossy(raw).into_owned()),
            _ => PgValue::Text(std::str::from_utf8(raw)?.to_owned()),
        })
    }

    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(PgValue::Null)
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// PostgreSQL's binary NUMERIC: digit count, weight, sign, display scale, base-10000 digits.
fn numeric(raw: &[u8]) -> Result<PgValue, BoxError> {
    let word = |i: usize| -> Result<u16, BoxError> {
        Ok(u16::from_be_bytes(be(raw
            .get(i..i + 2)
            .ok_or("numeric truncated")?)?))
    };
    let ndigits = usize::from(word(0)?);
    let weight = i32::from(word(2)? as i16);
    let sign = word(4)?;
    let dscale = u32::from(word(6)?);
    if sign == 0xC000 {
        return Err("NaN cannot be sent as a decimal".into());
    }
    let mut mantissa: i128 = 0;
    // The value is sum(digit[i] * 10000^(weight - i)); build it at scale `dscale`.
    for i in 0..ndigits {
        let digit = i128::from(word(8 + 2 * i)?);
        let power = 4 * (weight - i as i32) + dscale as i32;
        let term = if power >= 0 {
            digit.checked_mul(
                10i128
                    .checked_pow(power as u32)
                    .ok_or("numeric too large")?,
            )
        } else {
            Some(digit / 10i128.pow((-power) as u32))
        };
        mantissa = mantissa
            .checked_add(term.ok_or("numeric too large")?)
            .ok_or("numeric too large")?;
    }
    if sign == 0x4000 {
        mantissa = -mantissa;
    }
    Ok(PgValue::Numeric {
        mantissa,
        scale: dscale,
    })
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
        .map_err(|_| {
            format!(
                "Conversion failed when converting date and/or time from character string '{text}'."
            )
        })
}

/// A DATETIME2 wire value (time ticks at `scale`, then 3 bytes of days since 0001-01-01).
pub fn datetime2_value(bytes: &[u8], scale: u8) -> Result<NaiveDateTime, String> {
    if bytes.len() < 4 {
        return Err("datetime2 too short".into());
    }
    let (time, date) = bytes.split_at(bytes.len() - 3);
    let mut raw = [0u8; 8];
    raw[..time.len()].copy_from_slice(time);
    let ticks = u64::from_le_bytes(raw);
    let nanos = ticks * 10u64.pow(9 - u32::from(scale.min(7)));
    let time = NaiveTime::from_num_seconds_from_midnight_opt(
        (nanos / 1_000_000_000) as u32,
        (nanos % 1_000_000_000) as u32,
    )
    .ok_or("datetime2 time out of range")?;
    Ok(date_value(date)?.and_time(time))
}

pub fn date_value(bytes: &[u8]) -> Result<NaiveDate, String> {
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
    fn recorded_types_map_onto_sql_server_types() {
        assert_eq!(
            SqlType::from_recorded("int", None, Some(10), Some(0)),
            SqlType::Int
        );
        assert_eq!(
            SqlType::from_recorded("decimal", None, Some(19), Some(4)),
            SqlType::Decimal {
                precision: 19,
                scale: 4
            }
        );
        assert_eq!(
            SqlType::from_recorded("nvarchar", Some(100), None, None),
            SqlType::NVarChar(Some(100))
        );
        assert_eq!(
            SqlType::from_recorded("nvarchar", Some(-1), None, None),
            SqlType::NVarChar(None)
        );
        assert_eq!(
            SqlType::from_recorded("timestamp", None, None, None),
            SqlType::RowVersion
        );
    }

    #[test]
    fn numerics_decode_exactly() {
        // 12345.6700: ndigits 3 (1, 2345, 6700), weight 1, scale 4.
        let raw = [0, 3, 0, 1, 0, 0, 0, 4, 0, 1, 0x09, 0x29, 0x1A, 0x2C];
        assert_eq!(
            numeric(&raw).expect("decodes"),
            PgValue::Numeric {
                mantissa: 123_456_700,
                scale: 4
            }
        );
        assert_eq!(numeric_text(123_456_700, 4), "12345.6700");
        assert_eq!(numeric_text(-5, 2), "-0.05");
        assert_eq!(rescale(12_345, 3, 1), Some(123));
        assert_eq!(rescale(12_355, 3, 2), Some(1236));
    }

    #[test]
    fn datetime2_wire_values_decode() {
        let at = NaiveDate::from_ymd_opt(2026, 11, 23)
            .and_then(|d| d.and_hms_opt(10, 14, 12))
            .expect("valid");
        let mut out = BytesMut::new();
        SqlType::DateTime2(7)
            .put_value(&mut out, &PgValue::DateTime(at))
            .expect("encodes");
        assert_eq!(datetime2_value(&out[1..], 7).expect("decodes"), at);
    }
}
