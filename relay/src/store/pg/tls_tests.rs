//! Unit tests of the PostgreSQL URL's TLS settings ([`super`]).

use super::*;

fn parse(url: &str) -> PgUrl {
    PgUrl::parse(url).expect("parses")
}

#[test]
fn sslmode_means_what_libpq_says() {
    use tokio_postgres::config::SslMode as Wire;
    let plain = parse("postgres://u:pw@db/app");
    assert_eq!(plain.mode, SslMode::Prefer, "the default is prefer");
    assert_eq!(plain.config.get_ssl_mode(), Wire::Prefer);
    for (value, mode, wire) in [
        ("disable", SslMode::Disable, Wire::Disable),
        ("allow", SslMode::Allow, Wire::Prefer),
        ("prefer", SslMode::Prefer, Wire::Prefer),
        ("require", SslMode::Require, Wire::Require),
        ("verify-full", SslMode::VerifyFull, Wire::Require),
    ] {
        let url = parse(&format!(
            "postgres://u:pw@db/app?sslmode={value}&application_name=relay"
        ));
        assert_eq!(url.mode, mode, "{value}");
        assert_eq!(url.config.get_ssl_mode(), wire, "{value}");
        assert_eq!(url.config.get_application_name(), Some("relay"));
        url.connector().expect("a connector");
    }
    assert!(!parse("postgres://db/app?sslmode=require").verifies_server());
    assert!(parse("postgres://db/app?sslmode=verify-full").verifies_server());
    // verify-ca against every public CA would check next to nothing: a root file it is.
    let error = PgUrl::parse("postgres://db/app?sslmode=verify-ca")
        .err()
        .expect("verify-ca without sslrootcert");
    assert!(error.contains("needs sslrootcert"), "{error}");
    let with_root = parse("postgres://db/app?sslmode=verify-ca&sslrootcert=%2Fca.pem");
    assert_eq!(with_root.mode, SslMode::VerifyCa);
    assert_eq!(with_root.config.get_ssl_mode(), Wire::Require);
    assert!(with_root.verifies_server());
}

#[test]
fn sslrootcert_is_read_from_the_url() {
    let url = parse("postgres://db/app?sslmode=verify-ca&sslrootcert=%2Fetc%2Fca%20x.pem");
    assert_eq!(url.root_cert, Some(RootCert::File("/etc/ca x.pem".into())));
    assert_eq!(
        url.setting(),
        "sslmode=verify-ca, sslrootcert=/etc/ca x.pem"
    );
    let system = parse("postgres://db/app?sslrootcert=system");
    assert_eq!(
        system.mode,
        SslMode::VerifyFull,
        "system makes verify-full the default"
    );
    let weaker = PgUrl::parse("postgres://db/app?sslrootcert=system&sslmode=require");
    assert!(weaker.is_err_and(|e| e.contains("verify-full")));
    let missing = parse("postgres://db/app?sslmode=verify-ca&sslrootcert=/nonexistent.pem");
    let error = missing.connector().err().expect("no such file").to_string();
    assert!(error.contains("sslrootcert=/nonexistent.pem"), "{error}");
}

#[test]
fn errors_name_the_setting_not_the_password() {
    let error = PgUrl::parse("postgres://u:hunter2@db/app?sslmode=verify")
        .err()
        .expect("bad sslmode");
    assert!(error.contains("sslmode=verify "), "{error}");
    assert!(!error.contains("hunter2"), "{error}");
    let error = PgUrl::parse("postgres://u:hunter2@db/app?sslcert=/c.pem")
        .err()
        .expect("client certificates");
    assert!(error.contains("sslcert"), "{error}");
    let url = parse("postgres://u:hunter2@db:6432/app?sslmode=require");
    assert_eq!(url.server(), "db:6432/app");
}
