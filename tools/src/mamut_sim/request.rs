//! Decoding what the client asks: an SQL batch, or an RPC call of `sp_executesql` with typed
//! parameters, into SQL text and parameter values with their SQL Server types.

use chrono::{NaiveDate, NaiveDateTime};

use super::types::SqlType;

/// An RPC parameter's value, as its declared SQL Server type says.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    /// tinyint, smallint, int, bigint: the value and its width in bytes.
    Int {
        value: i64,
        width: u8,
    },
    Bit(bool),
    Float(f64),
    /// decimal/numeric as exact text.
    Decimal(String),
    Text(String),
    Blob(Vec<u8>),
    DateTime(NaiveDateTime),
    Date(NaiveDate),
}

/// An RPC parameter: its name (with the `@`), its value, and the SQL Server type its TYPE_INFO
/// declares (none for an untyped NULL). In SQL Server the declared type is the type of the
/// parameter in an expression: `SELECT @P1` answers in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: String,
    pub value: Value,
    pub declared: Option<SqlType>,
}

impl Param {
    /// A parameter whose declared type follows from its value (scripts and tests).
    pub fn new(name: &str, value: Value) -> Self {
        let declared = match &value {
            Value::Null => None,
            Value::Int { width: 1, .. } => Some(SqlType::TinyInt),
            Value::Int { width: 2, .. } => Some(SqlType::SmallInt),
            Value::Int { width: 4, .. } => Some(SqlType::Int),
            Value::Int { .. } => Some(SqlType::BigInt),
            Value::Bit(_) => Some(SqlType::Bit),
            Value::Float(_) => Some(SqlType::Float),
            Value::Decimal(_) => None,
            Value::Text(_) => Some(SqlType::NVarChar(None)),
            Value::Blob(_) => Some(SqlType::VarBinary(None)),
            Value::DateTime(_) => Some(SqlType::DateTime2(7)),
            Value::Date(_) => Some(SqlType::Date),
        };
        Self {
            name: name.to_owned(),
            value,
            declared,
        }
    }
}

/// `sp_executesql`'s procedure id.
const SP_EXECUTESQL: u16 = 10;

#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub sql: String,
    pub params: Vec<Param>,
    /// An RPC call (answered with DONEINPROC/RETURNSTATUS/DONEPROC) or a batch.
    pub rpc: bool,
}

/// A cursor over a request's bytes; every read is bounds-checked.
struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).ok_or("length overflow")?;
        let bytes = self.data.get(self.at..end).ok_or("request truncated")?;
        self.at = end;
        Ok(bytes)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(
            b.try_into().map_err(|_| "request truncated")?,
        ))
    }
    fn utf16(&mut self, chars: usize) -> Result<String, String> {
        utf16(self.take(chars * 2)?)
    }
    fn done(&self) -> bool {
        self.at >= self.data.len()
    }
    /// ALL_HEADERS: a total length that includes itself; the headers are not needed here.
    fn skip_all_headers(&mut self) -> Result<(), String> {
        let total = self.u32()? as usize;
        self.take(total.checked_sub(4).ok_or("bad ALL_HEADERS length")?)?;
        Ok(())
    }
}

fn utf16(bytes: &[u8]) -> Result<String, String> {
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16(&units).map_err(|_| "text is not valid UTF-16".to_string())
}

pub fn sql_batch(data: &[u8]) -> Result<Request, String> {
    let mut reader = Reader { data, at: 0 };
    reader.skip_all_headers()?;
    let sql = utf16(&data[reader.at..])?;
    Ok(Request {
        sql,
        params: Vec::new(),
        rpc: false,
    })
}

pub fn rpc(data: &[u8]) -> Result<Request, String> {
    let mut r = Reader { data, at: 0 };
    r.skip_all_headers()?;
    let name_len = r.u16()?;
    if name_len == 0xFFFF {
        let id = r.u16()?;
        if id != SP_EXECUTESQL {
            return Err(format!(
                "only sp_executesql is supported, not procedure id {id}"
            ));
        }
    } else {
        let name = r.utf16(usize::from(name_len))?;
        if !name.eq_ignore_ascii_case("sp_executesql") {
            return Err(format!("only sp_executesql is supported, not {name}"));
        }
    }
    let _options = r.u16()?;
    let mut values = Vec::new();
    while !r.done() {
        let name_chars = usize::from(r.u8()?);
        let name = r.utf16(name_chars)?;
        let _status = r.u8()?;
        let (value, declared) = param_value(&mut r)?;
        values.push(Param {
            name,
            value,
            declared,
        });
    }
    let mut values = values.into_iter();
    let sql = match values.next() {
        Some(Param {
            value: Value::Text(sql),
            ..
        }) => sql,
        _ => return Err("sp_executesql needs the statement as its first parameter".into()),
    };
    let _declarations = values.next();
    // Parameters after the declarations are @P1, @P2...; tiberius sends their names too.
    let params = values
        .enumerate()
        .map(|(i, mut param)| {
            if param.name.is_empty() {
                param.name = format!("@P{}", i + 1);
            }
            param
        })
        .collect();
    Ok(Request {
        sql,
        params,
        rpc: true,
    })
}

/// One parameter: TYPE_INFO then the value; the type TYPE_INFO declares.
fn param_value(r: &mut Reader<'_>) -> Result<(Value, Option<SqlType>), String> {
    let type_id = r.u8()?;
    let int_type = |width: u8| match width {
        1 => SqlType::TinyInt,
        2 => SqlType::SmallInt,
        4 => SqlType::Int,
        _ => SqlType::BigInt,
    };
    let length = |max: u16, unit: u16| (max != 0xFFFF).then_some(max / unit);
    match type_id {
        // NULLTYPE: an untyped NULL, nothing follows.
        0x1F => Ok((Value::Null, None)),
        // Fixed-length INT1, INT2, INT4, INT8, BIT, FLT4, FLT8: no length, never NULL.
        0x30 | 0x34 | 0x38 | 0x7F | 0x32 | 0x3B | 0x3E => {
            let len = match type_id {
                0x30 | 0x32 => 1,
                0x34 => 2,
                0x38 | 0x3B => 4,
                _ => 8,
            };
            let b = r.take(len)?;
            Ok(match type_id {
                0x32 => (Value::Bit(b[0] != 0), Some(SqlType::Bit)),
                0x3B => (
                    Value::Float(f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
                    Some(SqlType::Real),
                ),
                0x3E => (
                    Value::Float(f64::from_le_bytes(b.try_into().map_err(|_| "bad float")?)),
                    Some(SqlType::Float),
                ),
                _ => {
                    let mut raw = [0u8; 8];
                    raw[..len].copy_from_slice(b);
                    let value = match len {
                        1 => i64::from(b[0]),
                        2 => i64::from(i16::from_le_bytes([b[0], b[1]])),
                        4 => i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                        _ => i64::from_le_bytes(raw),
                    };
                    let width = len as u8;
                    (Value::Int { value, width }, Some(int_type(width)))
                }
            })
        }
        // INTN, BITN: length byte in TYPE_INFO, then a length byte per value (0 = NULL).
        0x26 | 0x68 => {
            let max = r.u8()?;
            let declared = if type_id == 0x68 {
                SqlType::Bit
            } else {
                int_type(max)
            };
            let len = usize::from(r.u8()?);
            let bytes = r.take(len)?;
            let value = match len {
                0 => return Ok((Value::Null, Some(declared))),
                1 => i64::from(bytes[0]),
                2 => i64::from(i16::from_le_bytes([bytes[0], bytes[1]])),
                4 => i64::from(i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])),
                8 => i64::from_le_bytes(bytes.try_into().map_err(|_| "bad integer")?),
                _ => return Err(format!("integer of {len} bytes")),
            };
            Ok((
                if type_id == 0x68 {
                    Value::Bit(value != 0)
                } else {
                    Value::Int {
                        value,
                        width: len as u8,
                    }
                },
                Some(declared),
            ))
        }
        // FLTN
        0x6D => {
            let max = r.u8()?;
            let declared = if max == 4 {
                SqlType::Real
            } else {
                SqlType::Float
            };
            let len = usize::from(r.u8()?);
            let bytes = r.take(len)?;
            let value = match len {
                0 => Value::Null,
                4 => Value::Float(f64::from(f32::from_le_bytes(
                    bytes.try_into().map_err(|_| "bad float")?,
                ))),
                8 => Value::Float(f64::from_le_bytes(
                    bytes.try_into().map_err(|_| "bad float")?,
                )),
                _ => return Err(format!("float of {len} bytes")),
            };
            Ok((value, Some(declared)))
        }
        // DECIMALN, NUMERICN: stored as exact text.
        0x6A | 0x6C => {
            let _max = r.u8()?;
            let precision = r.u8()?;
            let scale = r.u8()?;
            let declared = SqlType::Decimal {
                precision: precision.clamp(1, 38),
                scale: scale.min(precision.clamp(1, 38)),
            };
            let len = usize::from(r.u8()?);
            if len == 0 {
                return Ok((Value::Null, Some(declared)));
            }
            let bytes = r.take(len)?;
            let mut magnitude = [0u8; 16];
            let digits = &bytes[1..];
            if digits.len() > 16 {
                return Err("decimal too long".into());
            }
            magnitude[..digits.len()].copy_from_slice(digits);
            let value = i128::from_le_bytes(magnitude);
            let signed = if bytes[0] == 1 { value } else { -value };
            Ok((
                Value::Decimal(super::types::numeric_text(signed, u32::from(scale))),
                Some(declared),
            ))
        }
        // NVARCHAR, NCHAR (UTF-16) and BIGVARCHAR, BIGCHAR (single byte).
        0xE7 | 0xEF | 0xA7 | 0xAF => {
            let max = r.u16()?;
            r.take(5)?; // collation
            let wide = matches!(type_id, 0xE7 | 0xEF);
            let declared = if wide {
                SqlType::NVarChar(length(max, 2))
            } else {
                SqlType::VarChar(length(max, 1))
            };
            let value = match var_bytes(r, max == 0xFFFF)? {
                None => Value::Null,
                Some(bytes) if wide => Value::Text(utf16(&bytes)?),
                Some(bytes) => Value::Text(bytes.iter().map(|&b| char::from(b)).collect()),
            };
            Ok((value, Some(declared)))
        }
        // BIGVARBIN, BIGBINARY
        0xA5 | 0xAD => {
            let max = r.u16()?;
            let declared = if type_id == 0xAD {
                SqlType::Binary(max)
            } else {
                SqlType::VarBinary(length(max, 1))
            };
            let value = var_bytes(r, max == 0xFFFF)?.map_or(Value::Null, Value::Blob);
            Ok((value, Some(declared)))
        }
        // DATETIME2N
        0x2A => {
            let scale = r.u8()?;
            let declared = SqlType::DateTime2(scale.min(7));
            let len = usize::from(r.u8()?);
            if len == 0 {
                return Ok((Value::Null, Some(declared)));
            }
            let bytes = r.take(len)?;
            Ok((
                Value::DateTime(super::types::datetime2_value(bytes, scale)?),
                Some(declared),
            ))
        }
        // DATEN
        0x28 => {
            let len = usize::from(r.u8()?);
            if len == 0 {
                return Ok((Value::Null, Some(SqlType::Date)));
            }
            let bytes = r.take(len)?;
            Ok((
                Value::Date(super::types::date_value(bytes)?),
                Some(SqlType::Date),
            ))
        }
        other => Err(format!(
            "parameter type 0x{other:02X} is not supported by the stand-in"
        )),
    }
}

/// A variable-length value: PLP for MAX types, else a two-byte length (0xFFFF = NULL).
fn var_bytes(r: &mut Reader<'_>, plp: bool) -> Result<Option<Vec<u8>>, String> {
    if !plp {
        let len = r.u16()?;
        if len == 0xFFFF {
            return Ok(None);
        }
        return Ok(Some(r.take(usize::from(len))?.to_vec()));
    }
    let total = r.u64()?;
    if total == u64::MAX {
        return Ok(None);
    }
    let mut out = Vec::new();
    loop {
        let chunk = r.u32()? as usize;
        if chunk == 0 {
            return Ok(Some(out));
        }
        out.extend_from_slice(r.take(chunk)?);
    }
}
