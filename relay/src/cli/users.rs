//! `relay user add|list|remove|sign-out|set-password`: console accounts from an operator's shell,
//! audited as [`CLI_ACTOR`]. Passwords come from standard input or `RELAY_USER_PASSWORD`.

use std::io::BufRead;

use chrono::Utc;
use serde_json::{Value, json};
use shared::TenantId;

use super::{CliError, UserCommand};
use crate::accounts::{CLI_ACTOR, check_username, password};
use crate::store::{AnyStore, NewAudit, UserRecord, UserView};

/// The environment variable a password may come from instead of standard input.
pub const PASSWORD_ENV: &str = "RELAY_USER_PASSWORD";

/// Runs a `relay user` command; `env` reads the environment, `stdin` is standard input.
pub async fn run(
    store: &AnyStore,
    command: UserCommand,
    env: &dyn Fn(&str) -> Option<String>,
    stdin: &mut dyn BufRead,
) -> Result<Value, CliError> {
    match command {
        UserCommand::Add {
            username,
            role,
            tenant,
            language,
            password_stdin,
        } => {
            check_username(&username).map_err(CliError::Usage)?;
            let tenant_id = tenant.map(tenant_id).transpose()?;
            let secret = read_password(password_stdin, env, stdin)?;
            let hash = password::hash(secret).await.map_err(usage)?;
            let now = Utc::now();
            let user = UserRecord {
                username: username.clone(),
                role,
                tenant_id: tenant_id.clone(),
                password_hash: hash,
                language,
                created_at: now,
                password_changed_at: now,
            };
            store.create_user(user.clone()).await?;
            audit(store, tenant_id, "user_add", &username, Some(role.as_str())).await?;
            Ok(json!(UserView::from(&user)))
        }
        UserCommand::List { tenant } => {
            let tenant = tenant.map(tenant_id).transpose()?;
            let users: Vec<UserView> = store
                .users(tenant)
                .await?
                .iter()
                .map(UserView::from)
                .collect();
            Ok(json!({ "users": users }))
        }
        UserCommand::Remove { username } => {
            let tenant = existing_tenant(store, &username).await?;
            store.remove_user(username.clone()).await?;
            audit(store, tenant, "user_remove", &username, None).await?;
            Ok(json!({ "username": username, "removed": true }))
        }
        UserCommand::SignOut { username } => {
            let tenant = existing_tenant(store, &username).await?;
            let ended = store.delete_sessions(username.clone()).await?;
            audit(store, tenant, "user_sign_out", &username, None).await?;
            Ok(json!({ "username": username, "sessions_ended": ended }))
        }
        UserCommand::SetPassword {
            username,
            password_stdin,
        } => {
            let tenant = existing_tenant(store, &username).await?;
            let secret = read_password(password_stdin, env, stdin)?;
            let hash = password::hash(secret).await.map_err(usage)?;
            store.set_password(username.clone(), hash).await?;
            audit(store, tenant, "user_set_password", &username, None).await?;
            Ok(json!({ "username": username, "password_changed": true, "sessions_ended": true }))
        }
    }
}

fn usage(e: impl std::fmt::Display) -> CliError {
    CliError::Usage(e.to_string())
}

fn tenant_id(value: String) -> Result<TenantId, CliError> {
    TenantId::new(value).map_err(usage)
}

/// The tenant of an account that must exist.
async fn existing_tenant(store: &AnyStore, username: &str) -> Result<Option<TenantId>, CliError> {
    match store.user(username.to_owned()).await? {
        Some(user) => Ok(user.tenant_id),
        None => Err(CliError::Usage(format!(
            "account {username} not found (see `relay user list`)"
        ))),
    }
}

/// The password: one line of standard input with `--password-stdin`, else
/// [`PASSWORD_ENV`]. Read at most [`password::MAX_BYTES`] and a line end.
fn read_password(
    from_stdin: bool,
    env: &dyn Fn(&str) -> Option<String>,
    stdin: &mut dyn BufRead,
) -> Result<String, CliError> {
    if !from_stdin {
        return env(PASSWORD_ENV).ok_or_else(|| {
            CliError::Usage(format!(
                "no password: give --password-stdin and type it (or pipe it) on standard \
                 input, or set {PASSWORD_ENV}"
            ))
        });
    }
    let mut line = Vec::new();
    let limit = password::MAX_BYTES as u64 + 2;
    std::io::Read::take(&mut *stdin, limit)
        .read_until(b'\n', &mut line)
        .map_err(|e| {
            CliError::Usage(format!("cannot read the password from standard input: {e}"))
        })?;
    if line.len() as u64 >= limit && !line.ends_with(b"\n") {
        return Err(CliError::Usage(format!(
            "the password on standard input is longer than {} bytes",
            password::MAX_BYTES
        )));
    }
    let text = String::from_utf8(line)
        .map_err(|_| CliError::Usage("the password on standard input is not UTF-8".into()))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

async fn audit(
    store: &AnyStore,
    tenant: Option<TenantId>,
    action: &str,
    username: &str,
    detail: Option<&str>,
) -> Result<(), CliError> {
    store
        .append_audit(NewAudit {
            actor: CLI_ACTOR.to_owned(),
            tenant_id: tenant,
            action: action.to_owned(),
            target: username.to_owned(),
            detail: detail.map(str::to_owned),
        })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn a_password_is_one_line_of_stdin_or_the_environment_never_an_argument() {
        let mut stdin = &b"a long enough password\r\nsecond line\n"[..];
        let read = read_password(true, &no_env, &mut stdin).expect("read");
        assert_eq!(read, "a long enough password");
        let env = |key: &str| (key == PASSWORD_ENV).then(|| "from the environment".to_owned());
        let read = read_password(false, &env, &mut &b""[..]).expect("env");
        assert_eq!(read, "from the environment");
        let missing = read_password(false, &no_env, &mut &b""[..]).expect_err("none");
        assert!(
            missing.to_string().contains("--password-stdin"),
            "{missing}"
        );
        let long = vec![b'x'; password::MAX_BYTES + 10];
        let too_long = read_password(true, &no_env, &mut &long[..]).expect_err("long");
        assert!(too_long.to_string().contains("longer than"), "{too_long}");
    }
}
