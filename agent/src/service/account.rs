//! The account a Windows service runs as: the virtual account `NT SERVICE\<name>` (the
//! default), the built-in accounts in their usual spellings, or a user.

/// The account a service runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Account {
    /// `NT SERVICE\<service name>`: made by Windows for the service, no password; grant it
    /// rights on the configuration directory and (with Windows authentication) in SQL Server.
    Virtual,
    LocalSystem,
    LocalService,
    NetworkService,
    /// A domain or local user (`DOMAIN\user`, `.\user`, `user@domain`); a group managed
    /// service account (`DOMAIN\name$`) has no password.
    User {
        name: String,
    },
}

impl Account {
    /// Parses `--account` (absent: the virtual account of `service`).
    pub fn parse(text: Option<&str>, service: &str) -> Result<Self, String> {
        let Some(text) = text.map(str::trim) else {
            return Ok(Account::Virtual);
        };
        let lower = text.to_ascii_lowercase();
        let lower = lower.as_str();
        Ok(match lower {
            "localsystem" | ".\\localsystem" | "system" | "nt authority\\system" => {
                Account::LocalSystem
            }
            "localservice" | "nt authority\\localservice" | "nt authority\\local service" => {
                Account::LocalService
            }
            "networkservice" | "nt authority\\networkservice" | "nt authority\\network service" => {
                Account::NetworkService
            }
            _ if lower.starts_with("nt service\\") => {
                if lower["nt service\\".len()..] == service.to_ascii_lowercase() {
                    Account::Virtual
                } else {
                    return Err(format!(
                        "--account {text}: a virtual account is the service's own name; use NT SERVICE\\{service} (or leave --account out)"
                    ));
                }
            }
            _ if (text.contains('\\') || text.contains('@')) && !text.ends_with('\\') => {
                Account::User {
                    name: text.to_owned(),
                }
            }
            _ => {
                return Err(format!(
                    "--account {text}: write a user as DOMAIN\\user (.\\user for a local one), or use LocalSystem, NT AUTHORITY\\LocalService, NT AUTHORITY\\NetworkService, or leave it out for NT SERVICE\\{service}"
                ));
            }
        })
    }

    /// The account name for the service control manager; `None` is LocalSystem.
    pub fn account_name(&self, service: &str) -> Option<String> {
        match self {
            Account::Virtual => Some(format!("NT SERVICE\\{service}")),
            Account::LocalSystem => None,
            Account::LocalService => Some("NT AUTHORITY\\LocalService".to_owned()),
            Account::NetworkService => Some("NT AUTHORITY\\NetworkService".to_owned()),
            Account::User { name } => Some(name.clone()),
        }
    }

    /// How the account is shown to the user.
    pub fn describe(&self, service: &str) -> String {
        self.account_name(service)
            .unwrap_or_else(|| "LocalSystem".to_owned())
    }

    /// The account as icacls takes it: the well-known SID for the built-in accounts (their
    /// names are translated on non-English Windows), as deploy/windows/install.ps1 does.
    pub fn icacls_principal(&self, service: &str) -> String {
        match self {
            Account::LocalSystem => "*S-1-5-18".to_owned(),
            Account::LocalService => "*S-1-5-19".to_owned(),
            Account::NetworkService => "*S-1-5-20".to_owned(),
            Account::Virtual | Account::User { .. } => self.describe(service),
        }
    }

    /// Whether the service control manager needs a password for it.
    pub(super) fn needs_password(&self) -> bool {
        matches!(self, Account::User { name } if !name.ends_with('$'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::DEFAULT_NAME;

    #[test]
    fn accounts_are_recognised_in_their_usual_spellings() {
        let name = DEFAULT_NAME;
        let parsed = |text: &str| Account::parse(Some(text), name).unwrap();
        assert_eq!(Account::parse(None, name).unwrap(), Account::Virtual);
        assert_eq!(parsed("NT SERVICE\\mamutagent"), Account::Virtual);
        assert_eq!(parsed("LocalSystem"), Account::LocalSystem);
        assert_eq!(parsed("NT AUTHORITY\\SYSTEM"), Account::LocalSystem);
        assert_eq!(parsed("nt authority\\localservice"), Account::LocalService);
        assert_eq!(parsed("NetworkService"), Account::NetworkService);
        assert_eq!(
            parsed("CORP\\svc-mamut"),
            Account::User {
                name: "CORP\\svc-mamut".into()
            }
        );
        assert_eq!(
            Account::Virtual.account_name(name).as_deref(),
            Some("NT SERVICE\\MamutAgent")
        );
        assert_eq!(Account::LocalSystem.account_name(name), None);
        assert_eq!(Account::LocalSystem.describe(name), "LocalSystem");
        assert_eq!(
            Account::NetworkService.account_name(name).as_deref(),
            Some("NT AUTHORITY\\NetworkService")
        );
        assert_eq!(Account::LocalService.icacls_principal(name), "*S-1-5-19");
        assert_eq!(
            Account::Virtual.icacls_principal(name),
            "NT SERVICE\\MamutAgent"
        );
        let e = Account::parse(Some("NT SERVICE\\Other"), name).unwrap_err();
        assert!(e.contains("NT SERVICE\\MamutAgent"), "{e}");
        let e = Account::parse(Some("bob"), name).unwrap_err();
        assert!(e.contains("DOMAIN\\user"), "{e}");
    }
}
