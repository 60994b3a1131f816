//! What SQL Server's error numbers mean for an order: data Mamut refuses (too long, too large,
//! missing, a key taken) will never be written as it is, so the order is refused permanently
//! with a reason a merchant can act on; a lock wait, a deadlock or a lost connection is retried.

use tiberius::error::Error as TdsError;

use crate::mamut::ApplyError;

/// The SQL itself is wrong for this database (a mapping naming a missing table or column, or
/// a reserved word such as `Order` as a name).
const MAPPING: [u32; 5] = [102, 137, 156, 207, 208];
/// An `OUTPUT` clause on a table with triggers.
const OUTPUT_WITH_TRIGGERS: u32 = 334;
/// The SQL login may not read or write the table.
const PERMISSION: [u32; 2] = [229, 230];
/// Text or binary longer than its column.
const TRUNCATION: [u32; 2] = [2628, 8152];
/// A number too large for its column.
const OVERFLOW: [u32; 3] = [8115, 220, 232];
/// A value of the wrong type for its column.
const CONVERSION: [u32; 3] = [245, 8114, 241];
const NULL: u32 = 515;
const IDENTITY: u32 = 544;
const FOREIGN_KEY: u32 = 547;
const DUPLICATE: [u32; 2] = [2627, 2601];
const LOCK_TIMEOUT: u32 = 1222;
/// Words in the reason of a lock timeout, for callers that treat it quietly.
pub const LOCK_WAIT: &str = "past the lock timeout";
const DEADLOCK: u32 = 1205;

/// Where an error happened, to say so in the reason.
#[derive(Debug, Clone, Copy, Default)]
pub struct At<'a> {
    /// The Mamut table the statement touched.
    pub table: Option<&'a str>,
    /// Values this apply chose itself or looked up (a new number, the shop order id): a
    /// duplicate key on one of them means another writer got there at the same moment, and
    /// the retry sees its row.
    pub own_keys: &'a [String],
}

impl<'a> At<'a> {
    pub fn table(table: &'a str) -> Self {
        Self {
            table: Some(table),
            own_keys: &[],
        }
    }
}

/// An error without a known statement.
pub fn classify(e: TdsError) -> ApplyError {
    classify_at(e, At::default())
}

pub fn classify_at(e: TdsError, at: At<'_>) -> ApplyError {
    match &e {
        TdsError::Server(token) => server_error(token.code(), token.message(), at),
        _ => ApplyError::Retryable(format!("Mamut database: {e}")),
    }
}

/// What an error SQL Server sent (its number and message) means for the order.
pub fn server_error(code: u32, message: &str, at: At<'_>) -> ApplyError {
    let table = at.table.map(|t| format!(" in {t}")).unwrap_or_default();
    let permanent =
        |what: String| ApplyError::Permanent(format!("{what} (SQL Server {code}: {message})"));
    if MAPPING.contains(&code) {
        return permanent("Mamut rejected the SQL (check the mapping with agent check)".into());
    }
    if TRUNCATION.contains(&code) {
        return permanent(format!(
            "a text on the order is longer than Mamut allows{table}; shorten it in the shop, or \
             set on_too_long = \"truncate\" for the field, then replay the order"
        ));
    }
    if OVERFLOW.contains(&code) {
        return permanent(format!(
            "a number on the order is larger than Mamut's column allows{table}"
        ));
    }
    if CONVERSION.contains(&code) {
        return permanent(format!(
            "a value on the order does not fit the type of Mamut's column{table} (check the mapping with agent check)"
        ));
    }
    if PERMISSION.contains(&code) {
        tracing::warn!(code, message, "Mamut's SQL login lacks a permission");
        return ApplyError::Retryable(format!(
            "Mamut's SQL login may not do this{table}: grant it the rights deploy/mamut/README.md \
             lists; retried ({message})"
        ));
    }
    match code {
        OUTPUT_WITH_TRIGGERS => permanent(format!(
            "Mamut's table{table} has triggers, which refuse an OUTPUT clause: use \
             numbering mode \"identity\" (SCOPE_IDENTITY) or \"series\""
        )),
        NULL => permanent(format!(
            "Mamut requires a value the order does not have{table}"
        )),
        IDENTITY => permanent(format!(
            "Mamut numbers{table} itself (an IDENTITY column): set the numbering mode to \
             \"identity\" in [mamut.sqlserver]"
        )),
        FOREIGN_KEY => permanent(format!(
            "the order refers to something Mamut does not have{table}"
        )),
        c if DUPLICATE.contains(&c) => {
            let value = duplicate_value(message);
            let own = value.is_some_and(|v| {
                at.own_keys
                    .iter()
                    .filter(|k| !k.is_empty())
                    .any(|k| v.split(',').any(|part| part.trim() == k))
            });
            if own {
                ApplyError::Retryable(format!(
                    "another writer used the same key{table} at the same moment; the order is retried ({message})"
                ))
            } else {
                permanent(format!(
                    "Mamut already has a row with this unique value{table}; if it is the new \
                     order or customer number, the number series is behind the numbers in use \
                     (move it past the highest), then replay the order"
                ))
            }
        }
        LOCK_TIMEOUT => ApplyError::Retryable(format!(
            "Mamut kept a lock{table} {LOCK_WAIT}: a Mamut user may be editing it; \
             retried ({message})"
        )),
        DEADLOCK => ApplyError::Retryable(format!(
            "Mamut chose this write as a deadlock victim{table}; retried ({message})"
        )),
        _ => ApplyError::Retryable(format!(
            "Mamut database{table}: {message} (SQL Server {code})"
        )),
    }
}

/// The value of "The duplicate key value is (...)" in a 2627/2601 message.
fn duplicate_value(message: &str) -> Option<&str> {
    let start = message.find("duplicate key value is (")? + "duplicate key value is (".len();
    let end = message[start..].rfind(')')? + start;
    Some(&message[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: u32, message: &str) -> (u32, String) {
        (code, message.to_owned())
    }

    fn classify((code, message): (u32, String)) -> ApplyError {
        server_error(code, &message, At::default())
    }

    fn classify_at((code, message): (u32, String), at: At<'_>) -> ApplyError {
        server_error(code, &message, at)
    }

    fn permanent(e: ApplyError) -> String {
        match e {
            ApplyError::Permanent(reason) => reason,
            ApplyError::Retryable(reason) => panic!("expected permanent, got retryable: {reason}"),
        }
    }

    #[test]
    fn data_errors_are_permanent() {
        for code in [2628, 8152, 8115, 515, 544, 547, 245, 8114, 207, 208] {
            permanent(classify_at(server(code, "refused"), At::table("orders")));
        }
        let reason = permanent(classify(server(
            2628,
            "String or binary data would be truncated in table 'mamut.dbo.customers', column 'name'.",
        )));
        assert!(reason.contains("longer than Mamut allows"), "{reason}");
        assert!(reason.contains("column 'name'"), "{reason}");
    }

    #[test]
    fn locks_deadlocks_and_connections_are_retried() {
        for code in [1222, 1205, 4060] {
            assert!(matches!(
                classify(server(code, "busy")),
                ApplyError::Retryable(_)
            ));
        }
        let io = TdsError::Io {
            kind: std::io::ErrorKind::ConnectionReset,
            message: "reset".into(),
        };
        assert!(matches!(super::classify(io), ApplyError::Retryable(_)));
    }

    #[test]
    fn a_duplicate_on_a_key_of_this_apply_is_retried_any_other_is_permanent() {
        let taken = "Violation of PRIMARY KEY constraint 'PK_orders'. Cannot insert duplicate key in object 'dbo.orders'. The duplicate key value is (10001).";
        let own = ["10001".to_owned()];
        let at = At {
            table: Some("orders"),
            own_keys: &own,
        };
        assert!(matches!(
            classify_at(server(2627, taken), at),
            ApplyError::Retryable(_)
        ));
        let other = "Cannot insert duplicate key row in object 'dbo.customers' with unique index 'customers_email'. The duplicate key value is (a@example.com).";
        permanent(classify_at(server(2601, other), at));
    }
}
