//! Reading values out of SQL Server's answers whatever type the server chose: integers of any
//! width (`COUNT(*)` is `int`, `SCOPE_IDENTITY()` is `numeric(38,0)`, a column may be
//! `tinyint`), and rowversions as the agent's `i64` cursors.

use rust_decimal::Decimal;
use tiberius::{ColumnData, Row};

/// An integer from a `tinyint`, `smallint`, `int`, `bigint` or scale-0 (or whole) `decimal`
/// value; `None` for NULL.
pub fn int_of(data: &ColumnData<'_>) -> Result<Option<i64>, String> {
    match data {
        ColumnData::U8(v) => Ok(v.map(i64::from)),
        ColumnData::I16(v) => Ok(v.map(i64::from)),
        ColumnData::I32(v) => Ok(v.map(i64::from)),
        ColumnData::I64(v) => Ok(*v),
        ColumnData::Numeric(None) => Ok(None),
        ColumnData::Numeric(Some(n)) => {
            let divisor = 10i128
                .checked_pow(u32::from(n.scale()))
                .ok_or_else(|| format!("numeric {n} has an impossible scale"))?;
            if n.value() % divisor != 0 {
                return Err(format!("numeric {n} is not a whole number"));
            }
            i64::try_from(n.value() / divisor)
                .map(Some)
                .map_err(|_| format!("numeric {n} does not fit a 64-bit integer"))
        }
        other => Err(format!("expected an integer, got {other:?}")),
    }
}

/// The integer in column `index` of `row` (see [`int_of`]).
pub fn int(row: &Row, index: usize) -> Result<Option<i64>, String> {
    let data = row
        .get_column_data(index)
        .map_err(|e| format!("column {index}: {e}"))?;
    int_of(data).map_err(|e| format!("column {index}: {e}"))
}

/// The integer in column `index`, which must not be NULL.
pub fn required_int(row: &Row, index: usize) -> Result<i64, String> {
    int(row, index)?.ok_or_else(|| format!("column {index} is NULL"))
}

/// A `decimal`/`numeric` or integer value as a [`Decimal`].
pub fn decimal_of(data: &ColumnData<'_>) -> Result<Option<Decimal>, String> {
    match data {
        ColumnData::Numeric(None) => Ok(None),
        ColumnData::Numeric(Some(n)) => {
            Decimal::try_from_i128_with_scale(n.value(), u32::from(n.scale()))
                .map(Some)
                .map_err(|e| format!("numeric {n}: {e}"))
        }
        other => int_of(other).map(|v| v.map(Decimal::from)),
    }
}

/// A rowversion (`binary(8)`, big-endian) as the agent's cursor.
pub fn rowversion_of(data: &ColumnData<'_>) -> Result<i64, String> {
    match data {
        ColumnData::Binary(Some(bytes)) => {
            let bytes: [u8; 8] = bytes.as_ref().try_into().map_err(|_| {
                format!(
                    "a rowversion has 8 bytes, this value {} (is the mapped rv column a rowversion?)",
                    bytes.len()
                )
            })?;
            Ok(i64::from_be_bytes(bytes))
        }
        ColumnData::Binary(None) => Err("the rowversion is NULL".into()),
        other => Err(format!(
            "expected a rowversion (binary(8)), got {other:?} (is the mapped rv column a rowversion?)"
        )),
    }
}

/// The rowversion in column `index` of `row`.
pub fn rowversion(row: &Row, index: usize) -> Result<i64, String> {
    let data = row
        .get_column_data(index)
        .map_err(|e| format!("column {index}: {e}"))?;
    rowversion_of(data).map_err(|e| format!("column {index}: {e}"))
}

/// A cursor as the `binary(8)` value it stands for, to compare with a rowversion column.
pub fn rowversion_param(cursor: i64) -> Vec<u8> {
    cursor.to_be_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use tiberius::numeric::Numeric;

    use super::*;

    #[test]
    fn integers_of_every_width_are_read() {
        assert_eq!(int_of(&ColumnData::U8(Some(255))), Ok(Some(255)));
        assert_eq!(int_of(&ColumnData::I16(Some(-3))), Ok(Some(-3)));
        assert_eq!(int_of(&ColumnData::I32(Some(1))), Ok(Some(1)));
        assert_eq!(int_of(&ColumnData::I64(Some(i64::MAX))), Ok(Some(i64::MAX)));
        assert_eq!(int_of(&ColumnData::I32(None)), Ok(None));
    }

    #[test]
    fn scope_identity_numeric_38_0_is_an_integer() {
        let identity = Numeric::new_with_scale(10_001, 0);
        assert_eq!(
            int_of(&ColumnData::Numeric(Some(identity))),
            Ok(Some(10_001))
        );
        let whole = Numeric::new_with_scale(4200, 2);
        assert_eq!(int_of(&ColumnData::Numeric(Some(whole))), Ok(Some(42)));
        assert_eq!(int_of(&ColumnData::Numeric(None)), Ok(None));
    }

    #[test]
    fn fractions_overflow_and_text_are_refused() {
        let fraction = Numeric::new_with_scale(4250, 2);
        assert!(int_of(&ColumnData::Numeric(Some(fraction))).is_err());
        let huge = Numeric::new_with_scale(i128::from(i64::MAX) + 1, 0);
        assert!(int_of(&ColumnData::Numeric(Some(huge))).is_err());
        assert!(int_of(&ColumnData::String(Some("1".into()))).is_err());
    }

    #[test]
    fn rows_are_read_by_the_same_helper() {
        let row = Row::builder()
            .column("n", tiberius::ColumnType::Int4, ColumnData::I32(Some(1)))
            .column("rv", tiberius::ColumnType::BigBinary, {
                ColumnData::Binary(Some(rowversion_param(0x0102).into()))
            })
            .build();
        assert_eq!(required_int(&row, 0), Ok(1));
        assert_eq!(rowversion(&row, 1), Ok(0x0102));
        assert!(int(&row, 5).is_err());
    }

    #[test]
    fn rowversions_are_big_endian_binary_8() {
        assert_eq!(rowversion_param(1), vec![0, 0, 0, 0, 0, 0, 0, 1]);
        let bytes = rowversion_param(0x1234_5678_9abc);
        assert_eq!(
            rowversion_of(&ColumnData::Binary(Some(bytes.into()))),
            Ok(0x1234_5678_9abc)
        );
        assert!(rowversion_of(&ColumnData::Binary(Some(vec![1, 2].into()))).is_err());
        assert!(rowversion_of(&ColumnData::I64(Some(1))).is_err());
    }

    #[test]
    fn decimals_and_integers_read_as_decimals() {
        let n = Numeric::new_with_scale(12345, 2);
        assert_eq!(
            decimal_of(&ColumnData::Numeric(Some(n))),
            Ok(Some(Decimal::new(12345, 2)))
        );
        assert_eq!(
            decimal_of(&ColumnData::I32(Some(7))),
            Ok(Some(Decimal::from(7)))
        );
    }
}
