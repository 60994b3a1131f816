//! Opening a connection to Mamut's SQL Server: host or named instance (through the SQL
//! Browser), SQL Server or Windows authentication, encryption and the CA to trust, then the
//! session settings each pool's connections need (`SET LOCK_TIMEOUT`).

use std::time::Duration;

use tiberius::error::Error as TdsError;
use tiberius::{AuthMethod, Client, Config, EncryptionLevel};
use tokio::net::TcpStream;
use tokio_util::compat::TokioAsyncWriteCompatExt;

use super::pool::{BoxFuture, Connector, Session};
use super::{Conn, SqlServer, sql};
use crate::mamut::settings::{Authentication, Encryption, SqlServerConfig};

/// Opens tiberius connections with the session settings every connection needs.
pub struct TdsConnector {
    pub(super) config: SqlServerConfig,
    /// `SET LOCK_TIMEOUT` of this pool's connections.
    pub(super) lock_timeout_ms: u32,
}

impl Connector for TdsConnector {
    type Conn = Conn;
    fn connect(&self) -> BoxFuture<'_, Result<Conn, String>> {
        Box::pin(async move {
            let mut conn = SqlServer::connect(&self.config)
                .await
                .map_err(|e| format!("cannot reach Mamut: {e}"))?;
            batch(&mut conn, &sql::set_lock_timeout(self.lock_timeout_ms))
                .await
                .map_err(|e| format!("Mamut refused SET LOCK_TIMEOUT: {e}"))?;
            Ok(conn)
        })
    }
}

impl Session for Conn {
    type Error = TdsError;
    fn batch<'a>(&'a mut self, sql: &'a str) -> BoxFuture<'a, Result<(), TdsError>> {
        Box::pin(batch(self, sql))
    }
}

impl SqlServer {
    pub async fn connect(config: &SqlServerConfig) -> Result<Conn, TdsError> {
        use tiberius::SqlBrowser;
        let (host, instance) = config.host_and_instance();
        let mut tds = Config::new();
        tds.host(host);
        tds.database(&config.database);
        tds.application_name("mamut-agent");
        match config.authentication {
            Authentication::SqlServer => tds.authentication(AuthMethod::sql_server(
                &config.user,
                config.password.expose(),
            )),
            #[cfg(windows)]
            Authentication::Windows => tds.authentication(AuthMethod::Integrated),
            #[cfg(not(windows))]
            Authentication::Windows => {
                return Err(TdsError::Conversion(
                    "integrated Windows authentication works only on Windows".into(),
                ));
            }
        }
        tds.encryption(match config.encryption {
            Encryption::Required => EncryptionLevel::Required,
            Encryption::Off => EncryptionLevel::Off,
            Encryption::NotSupported => EncryptionLevel::NotSupported,
        });
        if config.trust_server_certificate {
            tds.trust_cert();
        } else if let Some(ca) = &config.ca_file {
            tds.trust_cert_ca(ca.display());
        }
        let connect = async {
            match instance {
                Some(instance) => {
                    // The browser's UDP port; it answers with the instance's TCP port.
                    tds.instance_name(instance);
                    tds.port(config.browser_port.unwrap_or(1434));
                    TcpStream::connect_named(&tds).await
                }
                None => {
                    tds.port(config.port);
                    Ok(TcpStream::connect((host, config.port)).await?)
                }
            }
        };
        let tcp = tokio::time::timeout(Duration::from_secs(10), connect)
            .await
            .map_err(|_| TdsError::Io {
                kind: std::io::ErrorKind::TimedOut,
                message: "connect timed out".into(),
            })??;
        tcp.set_nodelay(true)?;
        Client::connect(tds, tcp.compat_write()).await
    }
}

async fn batch(conn: &mut Conn, sql: &str) -> Result<(), TdsError> {
    conn.simple_query(sql).await?.into_results().await.map(drop)
}
