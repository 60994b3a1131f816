//! Parsing `relay.proxy`, the order of the sources, and what the system's answer becomes.

use std::collections::HashMap;

use super::*;

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |key| map.get(key).cloned()
}

fn wss(host: &str) -> Target {
    Target {
        host: host.into(),
        port: 443,
        tls: true,
    }
}

fn fixed(plan: Plan) -> Decision {
    match plan {
        Plan::Fixed(decision) => decision,
        other => panic!("expected a fixed decision, got {other:?}"),
    }
}

#[test]
fn credentials_are_percent_decoded_as_curl_does() {
    let p = Proxy::parse("http://alice:p%40ssw0rd@proxy:3128").expect("valid");
    assert_eq!((p.host.as_str(), p.port), ("proxy", 3128));
    assert_eq!(p.credentials, Some(Credentials::new("alice", "p@ssw0rd")));
    let p = Proxy::parse("http://d%5Calice:a%2Fb%3Ac@proxy").expect("valid");
    assert_eq!(p.credentials, Some(Credentials::new("d\\alice", "a/b:c")));
    assert_eq!(p.port, 3128, "the port defaults to 3128");
    // The last @ separates: an unencoded @ in the password still works, as in curl.
    let p = Proxy::parse("http://bob:x@y@[fd00::1]:8080/").expect("valid");
    assert_eq!(p.credentials, Some(Credentials::new("bob", "x@y")));
    assert_eq!((p.host.as_str(), p.port), ("fd00::1", 8080));
    let p = Proxy::parse("http://carol@proxy:1").expect("valid");
    assert_eq!(p.credentials, Some(Credentials::new("carol", "")));
}

#[test]
fn an_invalid_percent_sequence_is_an_error_that_does_not_repeat_the_password() {
    for url in [
        "http://alice:50%off@proxy:1",
        "http://alice:x%4@proxy:1",
        "http://alice:%zz@proxy:1",
    ] {
        let error = Proxy::parse(url).expect_err(url);
        assert!(
            error.contains("the password has an invalid percent sequence"),
            "{error}"
        );
        assert!(error.contains("%25"), "{error}");
        assert!(!error.contains("off") && !error.contains("zz"), "{error}");
    }
    let error = Proxy::parse("http://%ff:x@proxy:1").expect_err("not UTF-8");
    assert!(error.contains("the user name is not UTF-8"), "{error}");
}

#[test]
fn debug_never_shows_credentials() {
    let p = Proxy::parse("http://alice:secret@proxy:1").expect("valid");
    let shown = format!("{p:?} {p}");
    assert!(
        !shown.contains("secret") && !shown.contains("alice"),
        "{shown}"
    );
    assert_eq!(p.to_string(), "proxy:1");
}

#[test]
fn relay_proxy_takes_urls_none_direct_auto_and_pac() {
    assert_eq!(Setting::parse(None), Ok(Setting::System));
    assert_eq!(Setting::parse(Some("  ")), Ok(Setting::System));
    assert_eq!(Setting::parse(Some("none")), Ok(Setting::Direct));
    assert_eq!(Setting::parse(Some("DIRECT")), Ok(Setting::Direct));
    assert_eq!(Setting::parse(Some("auto")), Ok(Setting::AutoDetect));
    assert_eq!(
        Setting::parse(Some("pac:http://wpad.corp.local/wpad.dat")),
        Ok(Setting::Pac("http://wpad.corp.local/wpad.dat".into()))
    );
    assert!(Setting::parse(Some("pac:wpad.dat")).is_err());
    assert!(matches!(
        Setting::parse(Some("http://10.0.0.1:8080")),
        Ok(Setting::Url(_))
    ));
    let error = Setting::parse(Some("socks5://p:1")).expect_err("not HTTP");
    assert!(error.contains("\"none\""), "{error}");
    assert_eq!(
        Setting::AutoDetect.supported().is_ok(),
        cfg!(windows),
        "auto-detection is Windows' WinHTTP"
    );
}

#[test]
fn the_order_is_config_then_https_proxy_minding_no_proxy_then_the_system() {
    let env = env_of(&[
        ("HTTPS_PROXY", "http://user:pw@proxy.corp:8080"),
        ("NO_PROXY", "localhost,.internal"),
    ]);
    let d = fixed(plan(None, &wss("relay.example.com"), &env).expect("valid"));
    let p = d.proxy.clone().expect("a proxy");
    assert_eq!((p.host.as_str(), p.port), ("proxy.corp", 8080));
    assert_eq!(p.credentials, Some(Credentials::new("user", "pw")));
    assert_eq!(d.source, Source::Env("HTTPS_PROXY"));
    assert_eq!(
        d.to_string(),
        "proxy proxy.corp:8080 (from HTTPS_PROXY, Basic credentials from the URL)"
    );

    let d = fixed(plan(None, &wss("relay.internal"), &env).expect("valid"));
    assert_eq!((d.proxy, d.source), (None, Source::NoProxy));

    let d = fixed(plan(Some("http://10.0.0.1:3128"), &wss("localhost"), &env).expect("valid"));
    assert_eq!(d.source, Source::Config);
    assert_eq!(d.to_string(), "proxy 10.0.0.1:3128 (from relay.proxy)");

    // "none" wins over the environment, and asks nothing of the system.
    let d = fixed(plan(Some("none"), &wss("relay.example.com"), &env).expect("valid"));
    assert_eq!((d.proxy.clone(), d.source.clone()), (None, Source::Config));
    assert_eq!(d.to_string(), "no proxy (relay.proxy = \"none\")");

    let lower = env_of(&[("https_proxy", "http://p:1")]);
    let d = fixed(plan(None, &wss("relay"), &lower).expect("valid"));
    assert_eq!(d.source, Source::Env("https_proxy"));

    // Nothing set: Windows' settings are read at each connect attempt; elsewhere, direct.
    let nothing = plan(None, &wss("relay.example.com"), &env_of(&[])).expect("valid");
    if cfg!(windows) {
        assert_eq!(
            nothing,
            Plan::System {
                mode: SystemMode::Default,
                target: wss("relay.example.com")
            }
        );
    } else {
        assert_eq!(nothing, Plan::Fixed(Decision::direct(Source::Nothing)));
    }
    let error =
        plan(None, &wss("x"), &env_of(&[("HTTPS_PROXY", "socks5://p:1")])).expect_err("not HTTP");
    assert!(error.starts_with("HTTPS_PROXY: "), "{error}");
}

#[tokio::test]
async fn without_any_setting_off_windows_the_agent_goes_direct() {
    if cfg!(windows) {
        return;
    }
    let plan = plan(None, &wss("relay.example.com"), &env_of(&[])).expect("valid");
    let d = plan.resolve().await.expect("decided");
    assert_eq!((d.proxy.clone(), d.source.clone()), (None, Source::Nothing));
    assert_eq!(
        d.to_string(),
        "no proxy (none configured: no relay.proxy, no HTTPS_PROXY)"
    );
}

#[test]
fn the_systems_answer_minds_its_bypass_list_and_the_relays_scheme() {
    let answer = |proxies: Option<&str>, bypass: Option<&str>| SystemAnswer {
        proxies: proxies.map(str::to_owned),
        bypass: bypass.map(str::to_owned),
        source: Source::WinHttp,
    };
    let d = decide(
        answer(Some("http=a:1;https=b:2"), Some("<local>;*.corp.local")),
        &wss("relay.example.com"),
    )
    .expect("valid");
    let p = d.proxy.clone().expect("a proxy");
    assert_eq!(
        (p.host.as_str(), p.port, d.source.clone()),
        ("b", 2, Source::WinHttp)
    );
    assert_eq!(
        d.to_string(),
        "proxy b:2 (from WinHTTP settings, netsh winhttp show proxy)"
    );

    let d = decide(
        answer(Some("proxy:8080"), Some("<local>;*.corp.local")),
        &wss("relay.corp.local"),
    )
    .expect("valid");
    assert_eq!((d.proxy, d.source), (None, Source::WinHttpBypass));

    let d = decide(answer(None, None), &wss("relay")).expect("valid");
    assert_eq!((d.proxy, d.source), (None, Source::WinHttp));

    let wpad = SystemAnswer {
        proxies: Some("wpadproxy:3128".into()),
        bypass: None,
        source: Source::Wpad,
    };
    let d = decide(wpad, &wss("relay")).expect("valid");
    assert_eq!(
        d.to_string(),
        "proxy wpadproxy:3128 (from WPAD auto-detection)"
    );

    let error = decide(answer(Some("socks5://s:1"), None), &wss("relay")).expect_err("bad");
    assert!(error.starts_with("the WinHTTP proxy setting: "), "{error}");
}

#[test]
fn the_target_url_is_what_winhttp_evaluates() {
    assert_eq!(
        wss("relay.example.com").url(),
        "https://relay.example.com:443/"
    );
    let plain = Target {
        host: "::1".into(),
        port: 8080,
        tls: false,
    };
    assert_eq!(plain.url(), "http://[::1]:8080/");
}

#[test]
fn a_raw_slash_question_mark_or_hash_in_the_password_works_as_in_curl() {
    for (url, password) in [
        ("http://alice:pa/ss@proxy:3128", "pa/ss"),
        ("http://alice:se#cret@proxy", "se#cret"),
        ("http://alice:a?b/c@proxy:3128/", "a?b/c"),
    ] {
        let p = Proxy::parse(url).expect(url);
        assert_eq!((p.host.as_str(), p.port), ("proxy", 3128), "{url}");
        assert_eq!(p.credentials, Some(Credentials::new("alice", password)));
    }
}

#[test]
fn a_url_without_its_host_is_an_error_that_does_not_repeat_the_password() {
    for url in [
        "http://alice:secret",
        "http://alice:secret@",
        "http://alice:secret@:8080",
        "http://alice:secret@proxy:port",
        "http://alice:secret@pro xy:1",
    ] {
        let error = Proxy::parse(url).expect_err(url);
        assert!(!error.contains("secret"), "{url}: {error}");
        assert!(error.contains("host[:port]"), "{url}: {error}");
        let env = env_of(&[("HTTPS_PROXY", url)]);
        let error = plan(None, &wss("relay"), &env).expect_err(url);
        assert!(error.starts_with("HTTPS_PROXY: "), "{error}");
        assert!(!error.contains("secret"), "{url}: {error}");
        let error = plan(Some(url), &wss("relay"), &env_of(&[])).expect_err(url);
        assert!(!error.contains("secret"), "{url}: {error}");
        assert!(!redacted(url).contains("secret"), "{}", redacted(url));
    }
    let error = Setting::parse(Some("pac:alice:secret@host")).expect_err("not a URL");
    assert!(!error.contains("secret"), "{error}");
}

#[test]
fn redacted_hides_the_credentials_up_to_the_last_at() {
    assert_eq!(
        redacted("http://alice:pa/ss@proxy:3128"),
        "http://<hidden>@proxy:3128"
    );
    assert_eq!(
        redacted("http://alice:se#cr@t@proxy/"),
        "http://<hidden>@proxy/"
    );
    assert_eq!(redacted("http://proxy:3128"), "http://proxy:3128");
    assert_eq!(redacted("auto"), "auto");
}
