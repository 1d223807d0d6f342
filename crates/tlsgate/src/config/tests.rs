//! Config tests. Refusals are checked by line and field path (the contract
//! the operator relies on), not by message text, except where a message must
//! carry a specific piece of information.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tlsgate_cert_store::{ClientAuthMode, ClientAuthPolicy, CrlScope, ExpiredCrlPolicy};
use tlsgate_listener::{
    BackendConfig, HealthCheckConfig, HealthMethod, Limits, ListenerConfig, Protocol,
    SchedulerKind, Timeouts, TlsSettings,
};

use super::error::Position;
use super::*;

const PATH: &str = "config/tlsgate.toml";

/// `[store]` and the start of one https listener; append listener keys,
/// then call [`with_backend`].
const HEAD: &str = r#"[store]
dir = "certs"

[[listener]]
name = "web"
bind = "127.0.0.1:8443"
"#;

const BACKEND: &str = r#"
[[listener.backend]]
address = "127.0.0.1:8081"
"#;

fn accepted(text: &str) -> Config {
    match parse(Path::new(PATH), text) {
        Ok(config) => config,
        Err(errors) => panic!("refused:\n{}\n---\n{text}", render(&errors)),
    }
}

fn refused(text: &str) -> Vec<ConfigError> {
    match parse(Path::new(PATH), text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(errors) => errors,
    }
}

fn render(errors: &[ConfigError]) -> String {
    errors.iter().map(|e| format!("{e}\n")).collect()
}

/// Line of the first occurrence of `marker`.
fn line_of(text: &str, marker: &str) -> usize {
    let at = text
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker:?} in the text"));
    text[..at].matches('\n').count() + 1
}

/// Asserts exactly these errors, in file order: (field path, a marker on
/// the line the error must point at).
#[track_caller]
fn assert_refused(text: &str, expected: &[(&str, &str)]) {
    let errors = refused(text);
    let got: Vec<(usize, &str)> = errors
        .iter()
        .map(|e| (e.position.map_or(0, |p| p.line), e.field.as_str()))
        .collect();
    let want: Vec<(usize, &str)> = expected
        .iter()
        .map(|(field, marker)| (line_of(text, marker), *field))
        .collect();
    assert_eq!(got, want, "\n{}", render(&errors));
}

fn https(listener: &ListenerConfig) -> &TlsSettings {
    match &listener.protocol {
        Protocol::Https(tls) => tls,
        Protocol::Http => panic!("{} is http", listener.name),
    }
}

fn names(tls: &TlsSettings) -> Vec<&str> {
    tls.certificates.iter().map(|name| name.as_str()).collect()
}

// ---------------------------------------------------------------- accepted

#[test]
fn full_config_parses_into_expected_values() {
    let text = r#"
[server]
workers = 4

[store]
dir = "/var/lib/tlsgate/certs"
max_server_certificates = 500
max_ca_certificates = 20

[admin]
bind = "0.0.0.0:9901"
token_file = "/etc/tlsgate/admin.token"

[[tls_policy]]
name = "modern"
base = "tls12"
versions = ["TLSv1.3"]
cipher_suites = ["TLS_AES_256_GCM_SHA384"]
groups = ["X25519"]

[[listener]]
name = "web"
bind = "0.0.0.0:443"
protocol = "https"
certificates = ["www-ecdsa", "www-rsa", "api"]
tls_policy = "modern"
scheduler = "wlc"
trusted_proxies = ["10.0.0.0/8", "192.168.1.7", "2001:db8::/32"]
rfc9440_client_cert = true

[listener.mutual_auth]
ca = "corp-ca"
mode = "optional"
crl_scope = "leaf"
expired_crl = "reject-all"

[listener.timeouts]
handshake = "3s"
client_idle = "20s"
backend_connect = "500ms"
request = "2m"
shutdown_drain = "1h"
tunnel_idle = "90s"

[listener.limits]
max_header_bytes = 8192
max_connections = 250

[[listener.backend]]
address = "127.0.0.1:8081"
weight = 30

[[listener.backend]]
address = "app2.internal:80"

[[listener.backend]]
address = "[::1]:8082"
weight = 0

[listener.health_check]
method = "get"
path = "/healthz"
host = "example.com"
interval = "5s"
timeout = "1s"
healthy_threshold = 2
unhealthy_threshold = 10
status = ["2xx", "4XX"]

[[listener]]
name = "plain"
bind = "0.0.0.0:80"
protocol = "http"

[[listener.backend]]
address = "127.0.0.1:8081"
"#;
    let config = accepted(text);
    assert_eq!(config.path, PathBuf::from(PATH));
    assert_eq!(config.workers, Some(4));
    assert_eq!(
        config.store,
        StoreSection {
            dir: PathBuf::from("/var/lib/tlsgate/certs"),
            max_server_certificates: 500,
            max_ca_certificates: 20,
        }
    );
    assert_eq!(
        config.admin,
        AdminSection {
            bind: "0.0.0.0:9901".parse().unwrap(),
            token_file: Some(PathBuf::from("/etc/tlsgate/admin.token")),
        }
    );
    assert!(config.notes.is_empty(), "{:?}", config.notes);
    assert_eq!(config.listeners.len(), 2);

    let web = &config.listeners[0];
    assert_eq!(web.name, "web");
    assert_eq!(web.bind, "0.0.0.0:443".parse::<SocketAddr>().unwrap());
    let tls = https(web);
    assert_eq!(names(tls), ["www-ecdsa", "www-rsa", "api"]);
    assert_eq!(tls.policy.name(), "modern");
    assert_eq!(tls.policy.versions().len(), 1);
    let mutual_auth = tls.mutual_auth.as_ref().unwrap();
    assert_eq!(mutual_auth.ca.as_str(), "corp-ca");
    assert_eq!(
        mutual_auth.policy,
        ClientAuthPolicy {
            mode: ClientAuthMode::Optional,
            crl_scope: CrlScope::Leaf,
            expired_crl: ExpiredCrlPolicy::RejectAll,
        }
    );
    assert_eq!(web.scheduler, SchedulerKind::WeightedLeastConnections);
    assert_eq!(
        web.trusted_proxies,
        [
            "10.0.0.0/8".parse().unwrap(),
            "192.168.1.7/32".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ]
    );
    assert!(web.rfc9440_client_cert);
    assert_eq!(
        web.timeouts,
        Timeouts {
            handshake: Duration::from_secs(3),
            client_idle: Duration::from_secs(20),
            backend_connect: Duration::from_millis(500),
            request: Duration::from_secs(120),
            shutdown_drain: Duration::from_secs(3600),
            tunnel_idle: Duration::from_secs(90),
        }
    );
    assert_eq!(
        web.limits,
        Limits {
            max_header_bytes: 8192,
            max_connections: 250,
        }
    );
    assert_eq!(
        web.backends,
        [
            BackendConfig {
                address: "127.0.0.1:8081".into(),
                weight: 30,
            },
            BackendConfig {
                address: "app2.internal:80".into(),
                weight: 100,
            },
            BackendConfig {
                address: "[::1]:8082".into(),
                weight: 0,
            },
        ]
    );
    assert_eq!(
        web.health_check,
        Some(HealthCheckConfig {
            method: HealthMethod::Get,
            path: "/healthz".into(),
            host: Some("example.com".into()),
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
            healthy_threshold: 2,
            unhealthy_threshold: 10,
            accepted: [false, true, false, true, false],
        })
    );

    let plain = &config.listeners[1];
    assert!(matches!(plain.protocol, Protocol::Http));
    assert!(plain.tls().is_none());
}

#[test]
fn omitted_keys_take_their_defaults() {
    let config = accepted(&format!("{HEAD}certificates = [\"www\"]\n{BACKEND}"));
    assert_eq!(config.workers, None);
    assert_eq!(config.store.max_server_certificates, 10_000);
    assert_eq!(config.store.max_ca_certificates, 1_000);
    assert_eq!(
        config.admin,
        AdminSection {
            bind: "127.0.0.1:9901".parse().unwrap(),
            token_file: None,
        }
    );
    let web = &config.listeners[0];
    let tls = https(web); // protocol defaults to https
    assert_eq!(tls.policy.name(), "tls12");
    assert!(tls.mutual_auth.is_none());
    assert_eq!(web.scheduler, SchedulerKind::RoundRobin);
    assert_eq!(web.backends[0].weight, 100);
    assert_eq!(web.health_check, None);
    assert!(web.trusted_proxies.is_empty());
    assert_eq!(web.timeouts, Timeouts::default());
    assert_eq!(web.limits, Limits::default());
    assert!(!web.rfc9440_client_cert);
    assert!(config.notes.is_empty());
}

#[test]
fn empty_sections_take_their_defaults() {
    let text = format!(
        "{HEAD}certificates = [\"www\"]\n[listener.mutual_auth]\nca = \"corp-ca\"\n[listener.health_check]\n[listener.timeouts]\n[listener.limits]\n{BACKEND}"
    );
    let config = accepted(&text);
    let web = &config.listeners[0];
    let mutual_auth = https(web).mutual_auth.as_ref().unwrap();
    assert_eq!(mutual_auth.policy, ClientAuthPolicy::default());
    assert_eq!(mutual_auth.policy.mode, ClientAuthMode::Required);
    assert_eq!(web.health_check, Some(HealthCheckConfig::default()));
    let health = HealthCheckConfig::default();
    assert_eq!(
        (health.interval, health.timeout),
        (Duration::from_secs(2), Duration::from_secs(5))
    );
    assert_eq!(
        (health.healthy_threshold, health.unhealthy_threshold),
        (3, 3)
    );
    assert_eq!(web.timeouts, Timeouts::default());
    assert_eq!(web.limits, Limits::default());
}

#[test]
fn the_example_config_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/tlsgate.toml");
    let config = match load(&path) {
        Ok(config) => config,
        Err(errors) => panic!("{}", render(&errors)),
    };
    let folder = path.parent().unwrap();
    assert_eq!(config.store.dir, folder.join("../certs"));
    assert_eq!(config.admin.bind, "127.0.0.1:9901".parse().unwrap());
    assert_eq!(config.admin.token_file, None);
    assert_eq!(config.listeners.len(), 1);
    let web = &config.listeners[0];
    assert_eq!(web.name, "web");
    assert_eq!(web.bind, "127.0.0.1:8443".parse().unwrap());
    let tls = https(web);
    assert_eq!(names(tls), ["demo-server"]);
    assert!(tls.mutual_auth.is_none(), "mutual_auth ships commented out");
    let addresses: Vec<&str> = web.backends.iter().map(|b| b.address.as_str()).collect();
    assert_eq!(addresses, ["127.0.0.1:8081", "127.0.0.1:8082"]);
    assert!(web.health_check.is_some());
    assert!(config.notes.is_empty(), "{:?}", config.notes);
}

#[test]
fn every_example_config_parses() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&folder).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "toml") {
            if let Err(errors) = load(&path) {
                panic!("{}", render(&errors));
            }
            checked += 1;
        }
    }
    assert!(checked > 0, "no examples in {}", folder.display());
}

#[test]
fn relative_paths_resolve_against_the_config_folder() {
    let text = "[store]\ndir = \"certs\"\n[admin]\nbind = \"[::]:9901\"\ntoken_file = \"admin.token\"\n[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:8443\"\ncertificates = [\"www\"]\n[[listener.backend]]\naddress = \"127.0.0.1:8081\"\n";
    let config = parse(Path::new("/etc/tlsgate/tlsgate.toml"), text).unwrap();
    assert_eq!(config.store.dir, PathBuf::from("/etc/tlsgate/certs"));
    assert_eq!(
        config.admin.token_file,
        Some(PathBuf::from("/etc/tlsgate/admin.token"))
    );

    // A bare file name: the folder is the current directory.
    let config = parse(Path::new("tlsgate.toml"), text).unwrap();
    assert_eq!(config.store.dir, PathBuf::from("certs"));

    // Absolute paths stay as written.
    let text = text
        .replace("\"certs\"", "\"/srv/certs\"")
        .replace("\"admin.token\"", "\"/run/secrets/token\"");
    let config = parse(Path::new("/etc/tlsgate/tlsgate.toml"), &text).unwrap();
    assert_eq!(config.store.dir, PathBuf::from("/srv/certs"));
    assert_eq!(
        config.admin.token_file,
        Some(PathBuf::from("/run/secrets/token"))
    );
}

#[test]
fn load_names_a_file_it_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let errors = load(&missing).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].file, missing);
    assert_eq!(errors[0].position, None);
    assert!(
        errors[0]
            .to_string()
            .starts_with(&missing.display().to_string())
    );

    let good = dir.path().join("good.toml");
    std::fs::write(&good, format!("{HEAD}certificates = [\"www\"]\n{BACKEND}")).unwrap();
    assert_eq!(load(&good).unwrap().path, good);
}

#[test]
fn legacy_policy_aliases_are_accepted_with_a_note() {
    let config = accepted(&format!(
        "{HEAD}certificates = [\"www\"]\ntls_policy = \"tls_cipher_policy_1_0\"\n{BACKEND}"
    ));
    assert_eq!(config.notes.len(), 1, "{:?}", config.notes);
    let note = &config.notes[0];
    assert!(
        note.starts_with("listener \"web\": tls_policy tls_cipher_policy_1_0"),
        "{note}"
    );
    assert!(note.contains("tls12"), "says what it maps to: {note}");

    // Built-in names are not aliases: no note.
    for builtin in ["tls12", "tls12_strict", "tls13"] {
        let config = accepted(&format!(
            "{HEAD}certificates = [\"www\"]\ntls_policy = \"{builtin}\"\n{BACKEND}"
        ));
        assert!(config.notes.is_empty(), "{builtin}: {:?}", config.notes);
        assert_eq!(https(&config.listeners[0]).policy.name(), builtin);
    }
}

#[test]
fn draining_everything_and_rfc9440_without_mutual_auth_are_noted() {
    let text = format!(
        "{HEAD}certificates = [\"www\"]\nrfc9440_client_cert = true\n[[listener.backend]]\naddress = \"a:80\"\nweight = 0\n"
    );
    let notes = accepted(&text).notes;
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(
        notes
            .iter()
            .all(|note| note.starts_with("listener \"web\": "))
    );
    assert!(
        notes
            .iter()
            .any(|note| note.contains("rfc9440_client_cert"))
    );
    assert!(notes.iter().any(|note| note.contains("weight 0")));
}

#[test]
fn keywords_ignore_case() {
    let text = format!(
        "{HEAD}protocol = \"HTTPS\"\ncertificates = [\"www\"]\nscheduler = \"WRR\"\n[listener.mutual_auth]\nca = \"ca\"\nmode = \"Optional\"\nexpired_crl = \"Reject-All\"\n[listener.health_check]\nmethod = \"Get\"\n{BACKEND}"
    );
    let config = accepted(&text);
    let web = &config.listeners[0];
    assert_eq!(web.scheduler, SchedulerKind::WeightedRoundRobin);
    let policy = https(web).mutual_auth.as_ref().unwrap().policy;
    assert_eq!(policy.mode, ClientAuthMode::Optional);
    assert_eq!(policy.expired_crl, ExpiredCrlPolicy::RejectAll);
    assert_eq!(web.health_check.as_ref().unwrap().method, HealthMethod::Get);
}

#[test]
fn addresses_that_cannot_collide_are_accepted() {
    // Port 0 (tests bind it: the system picks a free port), different ports,
    // and different specific addresses on one port.
    let text = r#"[store]
dir = "certs"
[admin]
bind = "127.0.0.1:0"
[[listener]]
name = "a"
bind = "127.0.0.1:0"
protocol = "http"
[[listener.backend]]
address = "127.0.0.1:1"
[[listener]]
name = "b"
bind = "127.0.0.1:0"
protocol = "http"
[[listener.backend]]
address = "127.0.0.1:1"
[[listener]]
name = "c"
bind = "127.0.0.1:8080"
protocol = "http"
[[listener.backend]]
address = "127.0.0.1:1"
[[listener]]
name = "d"
bind = "127.0.0.2:8080"
protocol = "http"
[[listener.backend]]
address = "127.0.0.1:1"
"#;
    assert_eq!(accepted(text).listeners.len(), 4);
}

#[test]
fn trusted_proxies_are_normalised() {
    let text = format!(
        "{HEAD}certificates = [\"www\"]\ntrusted_proxies = [\"10.1.2.3/8\", \"::1\", \"fd00::/8\"]\n{BACKEND}"
    );
    let proxies = &accepted(&text).listeners[0].trusted_proxies;
    let expected: Vec<ipnet::IpNet> = ["10.0.0.0/8", "::1/128", "fd00::/8"]
        .iter()
        .map(|net| net.parse().unwrap())
        .collect();
    assert_eq!(proxies, &expected);
}

#[test]
fn boundaries_are_inclusive() {
    let text = format!(
        "[server]\nworkers = 1\n{HEAD}certificates = [\"www\"]\n[listener.timeouts]\nshutdown_drain = \"0s\"\n[listener.limits]\nmax_header_bytes = 1024\nmax_connections = 1\n[listener.health_check]\nhealthy_threshold = 2\nunhealthy_threshold = 10\n[[listener.backend]]\naddress = \"a:1\"\nweight = 0\n[[listener.backend]]\naddress = \"b:65535\"\nweight = 100\n"
    );
    let config = accepted(&text);
    let web = &config.listeners[0];
    assert_eq!(web.timeouts.shutdown_drain, Duration::ZERO);
    assert_eq!(web.limits.max_header_bytes, 1024);
}

// ---------------------------------------------------------------- refused

#[test]
fn display_names_file_line_column_listener_and_field() {
    let text = format!(
        "{HEAD}certificates = [\"www\"]\n[listener.health_check]\ninterval = \"2x\"\n{BACKEND}"
    );
    let errors = refused(&text);
    assert_eq!(errors.len(), 1);
    let error = &errors[0];
    assert_eq!(
        error.position,
        Some(Position {
            line: 9,
            column: 12
        })
    );
    assert_eq!(error.field, "listener[0].health_check.interval");
    assert_eq!(error.entry_name.as_deref(), Some("web"));
    assert_eq!(
        error.to_string(),
        "config/tlsgate.toml:9:12: listener \"web\" health_check.interval: \"2x\" has the unknown unit \"x\"; use ms, s, m or h"
    );
}

#[test]
fn syntax_errors_are_located() {
    let text = "[store]\ndir = \"certs\n[[listener]]\n";
    let errors = refused(text);
    assert!(!errors.is_empty());
    assert_eq!(errors[0].position.map(|p| p.line), Some(2));
    assert_eq!(errors[0].field, "");

    let errors = refused("[store]\ndir = \"certs\"\n[store]\nmax_ca_certificates = 5\n");
    assert!(
        errors[0].to_string().contains("duplicate table [store]"),
        "{}",
        errors[0]
    );
    let errors = refused("[store]\ndir = \"certs\"\ndir = \"other\"\n");
    assert_eq!(errors[0].position.map(|p| p.line), Some(3));
    assert!(
        errors[0].to_string().contains("duplicate key dir:"),
        "{}",
        errors[0]
    );
}

#[test]
fn unknown_keys_are_refused_in_every_entry() {
    let text = r#"[store]
dir = "certs"
[bogus]
x = 1

[[listener]]
name = "web"
bind = "127.0.0.1:8443"
certificates = ["www"]
[[listener.backend]]
address = "127.0.0.1:8081"
wieght = 3

[[listener]] # api
name = "api"
bind = "127.0.0.1:8444"
certificates = ["www"]
[listener.health_check]
intervall = "2s"
[[listener.backend]]
address = "127.0.0.1:8081"
"#;
    assert_refused(
        text,
        &[
            ("bogus", "[bogus]"),
            ("listener[0].backend[0].wieght", "wieght"),
            ("listener[1].health_check.intervall", "intervall"),
        ],
    );
    let errors = refused(text);
    // serde's message lists the keys allowed there.
    assert!(errors[1].message.contains("`weight`"), "{}", errors[1]);
    assert_eq!(errors[1].entry_name.as_deref(), Some("web"));
    assert_eq!(errors[2].entry_name.as_deref(), Some("api"));
}

#[test]
fn missing_keys_and_wrong_types_are_refused() {
    let text = r#"[store]
dir = "certs"
[[listener]]
name = "web"
bind = 8443
[[listener.backend]]
address = "127.0.0.1:8081"
[[listener]] # second
bind = "127.0.0.1:8444"
[[listener.backend]]
address = "127.0.0.1:8081"
"#;
    assert_refused(
        text,
        &[
            ("listener[0].bind", "bind = 8443"),
            ("listener[1]", "[[listener]] # second"),
        ],
    );

    let errors = refused("[[listener]]\nname = \"web\"\n");
    assert_eq!(errors[0].position, Some(Position { line: 1, column: 1 }));
    assert!(
        errors.iter().any(|e| e.message.contains("`store`")),
        "{}",
        render(&errors)
    );
}

#[test]
fn listener_names_must_be_valid_and_unique() {
    let text = r#"[store]
dir = "certs"
[[listener]]
name = ""
bind = "127.0.0.1:1001"
protocol = "http"
[[listener.backend]]
address = "a:1"
[[listener]]
name = "we b"
bind = "127.0.0.1:1002"
protocol = "http"
[[listener.backend]]
address = "a:1"
[[listener]]
name = "web"
bind = "127.0.0.1:1003"
protocol = "http"
[[listener.backend]]
address = "a:1"
[[listener]]
name = "web" # again
bind = "127.0.0.1:1004"
protocol = "http"
[[listener.backend]]
address = "a:1"
"#;
    assert_refused(
        text,
        &[
            ("listener[0].name", "name = \"\""),
            ("listener[1].name", "name = \"we b\""),
            ("listener[3].name", "# again"),
        ],
    );
}

#[test]
fn binds_must_parse_and_not_collide() {
    let text = r#"[store]
dir = "certs"
[[listener]]
name = "a"
bind = "localhost:80"
protocol = "http"
[[listener.backend]]
address = "a:1"
[[listener]]
name = "b"
bind = "0.0.0.0:8080"
protocol = "http"
[[listener.backend]]
address = "a:1"
[[listener]]
name = "c"
bind = "127.0.0.1:8080" # c
protocol = "http"
[[listener.backend]]
address = "a:1"
[[listener]]
name = "d"
bind = "[::]:8080" # d
protocol = "http"
[[listener.backend]]
address = "a:1"
[[listener]]
name = "e"
bind = "127.0.0.1:9901" # e
protocol = "http"
[[listener.backend]]
address = "a:1"
"#;
    assert_refused(
        text,
        &[
            ("listener[0].bind", "localhost:80"),
            ("listener[2].bind", "# c"),
            ("listener[3].bind", "# d"),
            ("listener[4].bind", "# e"),
        ],
    );
}

#[test]
fn https_needs_certificates() {
    // No certificates key: the listener's header.
    assert_refused(
        &format!("{HEAD}{BACKEND}"),
        &[("listener[0]", "[[listener]]")],
    );
    // An empty list: the list.
    assert_refused(
        &format!("{HEAD}certificates = []\n{BACKEND}"),
        &[("listener[0].certificates", "certificates")],
    );
    // protocol said https: the protocol.
    assert_refused(
        &format!("{HEAD}protocol = \"https\"\n{BACKEND}"),
        &[("listener[0].protocol", "protocol")],
    );
}

#[test]
fn http_listeners_take_no_tls_settings() {
    let text = format!(
        "{HEAD}protocol = \"http\"\ncertificates = [\"www\"]\ntls_policy = \"tls12\"\nrfc9440_client_cert = true\n[listener.mutual_auth]\nca = \"corp-ca\"\n{BACKEND}"
    );
    assert_refused(
        &text,
        &[
            ("listener[0].certificates", "certificates"),
            ("listener[0].tls_policy", "tls_policy"),
            ("listener[0].rfc9440_client_cert", "rfc9440"),
            ("listener[0].mutual_auth", "[listener.mutual_auth]"),
        ],
    );
    let errors = refused(&text);
    assert!(
        errors[0].message.contains("an http listener has no TLS"),
        "{}",
        errors[0]
    );
}

#[test]
fn certificate_names_must_be_valid_and_listed_once() {
    let name_81 = "a".repeat(81);
    let text = format!(
        "{HEAD}certificates = [\"www\", \"bad name\", \"../fine\", \"www\"]\n[listener.mutual_auth]\nca = \"{name_81}\"\n{BACKEND}"
    );
    let errors = refused(&text);
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "listener[0].certificates[1]",
            "listener[0].certificates[3]",
            "listener[0].mutual_auth.ca"
        ]
    );
    // Columns count characters: the second name starts after `certificates = ["www", `.
    assert_eq!(
        errors[0].position,
        Some(Position {
            line: 7,
            column: 24
        })
    );
}

#[test]
fn columns_count_characters_not_bytes() {
    // "ü" is two bytes: "bad name" starts 22 bytes into the line, 21 characters.
    let text = format!("{HEAD}certificates = [\"ü\", \"bad name\"]\n{BACKEND}");
    let errors = refused(&text);
    let positions: Vec<_> = errors.iter().map(|e| e.position).collect();
    assert_eq!(
        positions,
        [
            Some(Position {
                line: 7,
                column: 17
            }),
            Some(Position {
                line: 7,
                column: 22
            })
        ]
    );
}

#[test]
fn crlf_line_endings_keep_line_numbers() {
    let text = format!("{HEAD}certificates = [\"www\"]\nscheduler = \"rrr\"\n{BACKEND}")
        .replace('\n', "\r\n");
    let errors = refused(&text);
    assert_eq!(
        errors[0].position,
        Some(Position {
            line: 8,
            column: 13
        })
    );
}

#[test]
fn backends_are_required_and_checked() {
    assert_refused(
        &format!("{HEAD}certificates = [\"www\"]\n"),
        &[("listener[0].backend", "[[listener]]")],
    );
    let text = format!(
        r#"{HEAD}certificates = ["www"]
[[listener.backend]]
address = "app"
[[listener.backend]]
address = "http://app:80"
[[listener.backend]]
address = "app:0"
[[listener.backend]]
address = "::1:80"
[[listener.backend]]
address = "bad host:80"
[[listener.backend]]
address = "app:80"
weight = 101
[[listener.backend]]
address = "app:81"
weight = -1
[[listener.backend]]
address = "app:82"
[[listener.backend]]
address = "app:82" # twice
[[listener.backend]]
address = "not a host"
"#
    );
    assert_refused(
        &text,
        &[
            ("listener[0].backend[0].address", "\"app\""),
            ("listener[0].backend[1].address", "http://"),
            ("listener[0].backend[2].address", "app:0"),
            ("listener[0].backend[3].address", "::1:80"),
            ("listener[0].backend[4].address", "bad host"),
            ("listener[0].backend[5].weight", "101"),
            ("listener[0].backend[6].weight", "-1"),
            ("listener[0].backend[8].address", "# twice"),
            ("listener[0].backend[9].address", "address = \"not a host\""),
        ],
    );
    // No port, and no valid host to suggest one for: the example is a valid one.
    let errors = refused(&text);
    let no_port = errors.last().unwrap().to_string();
    assert!(
        no_port.contains("has no port") && no_port.contains("e.g. \"app1.internal:80\""),
        "{no_port}"
    );
}

#[test]
fn scheduler_and_protocol_must_be_known() {
    let text = format!(
        "{HEAD}protocol = \"tcp\"\ncertificates = [\"www\"]\nscheduler = \"lc\"\n{BACKEND}"
    );
    assert_refused(
        &text,
        &[
            ("listener[0].protocol", "tcp"),
            ("listener[0].scheduler", "lc"),
        ],
    );
    let errors = refused(&text);
    assert!(
        errors[1].message.contains("\"wlc\""),
        "lists the choices: {}",
        errors[1]
    );
}

#[test]
fn health_checks_are_checked() {
    let text = format!(
        r#"{HEAD}certificates = ["www"]
[listener.health_check]
method = "POST"
path = "healthz"
host = "a b"
interval = "0s"
timeout = "5 s"
healthy_threshold = 1
unhealthy_threshold = 11
status = ["2xx", "6xx", "20x"]
{BACKEND}"#
    );
    assert_refused(
        &text,
        &[
            ("listener[0].health_check.method", "POST"),
            ("listener[0].health_check.path", "healthz"),
            ("listener[0].health_check.host", "a b"),
            ("listener[0].health_check.interval", "0s"),
            ("listener[0].health_check.timeout", "5 s"),
            ("listener[0].health_check.healthy_threshold", "= 1"),
            ("listener[0].health_check.unhealthy_threshold", "= 11"),
            ("listener[0].health_check.status[1]", "6xx"),
            ("listener[0].health_check.status[2]", "6xx"),
        ],
    );
    assert_refused(
        &format!("{HEAD}certificates = [\"www\"]\n[listener.health_check]\nstatus = []\n{BACKEND}"),
        &[("listener[0].health_check.status", "status")],
    );
}

#[test]
fn timeouts_limits_and_proxies_are_checked() {
    let text = format!(
        r#"{HEAD}certificates = ["www"]
trusted_proxies = ["10.0.0.0/8", "10.0.0/8", "proxy.internal"]
[listener.timeouts]
handshake = "10"
client_idle = "0ms"
backend_connect = "5d"
request = "-1s"
shutdown_drain = "x"
[listener.limits]
max_header_bytes = 1023
max_connections = 0
{BACKEND}"#
    );
    assert_refused(
        &text,
        &[
            ("listener[0].trusted_proxies[1]", "trusted_proxies"),
            ("listener[0].trusted_proxies[2]", "trusted_proxies"),
            ("listener[0].timeouts.handshake", "handshake"),
            ("listener[0].timeouts.client_idle", "client_idle"),
            ("listener[0].timeouts.backend_connect", "backend_connect"),
            ("listener[0].timeouts.request", "request"),
            ("listener[0].timeouts.shutdown_drain", "shutdown_drain"),
            ("listener[0].limits.max_header_bytes", "max_header_bytes"),
            ("listener[0].limits.max_connections", "max_connections"),
        ],
    );
}

#[test]
fn tls_policies_must_resolve() {
    let text = format!(
        r#"[[tls_policy]]
name = "modern"
versions = ["TLSv1.3"]
[[tls_policy]] # bad suite
name = "weak"
cipher_suites = ["ECDHE-RSA-AES128-SHA"]
[[tls_policy]]
name = "tls13"
[[tls_policy]]
name = "modern" # again
[[tls_policy]]
name = "other"
base = "ssl3"
{HEAD}certificates = ["www"]
tls_policy = "modrn"
{BACKEND}"#
    );
    assert_refused(
        &text,
        &[
            ("tls_policy[1]", "[[tls_policy]] # bad suite"),
            ("tls_policy[2].name", "name = \"tls13\""),
            ("tls_policy[3].name", "# again"),
            ("tls_policy[4].base", "ssl3"),
            ("listener[0].tls_policy", "modrn"),
        ],
    );
    let errors = refused(&text);
    assert_eq!(errors[0].entry_name.as_deref(), Some("weak"));
    let unknown = &errors[4].message;
    for name in [
        "\"tls12\"",
        "\"tls13\"",
        "\"tls_cipher_policy_1_0\"",
        "\"modern\"",
    ] {
        assert!(unknown.contains(name), "lists {name}: {unknown}");
    }

    // A listener naming the broken entry is told so, not "unknown"; one
    // naming a built-in that an entry clashed with gets the built-in.
    let text = text.replace("tls_policy = \"modrn\"", "tls_policy = \"weak\"");
    let errors = refused(&text);
    let named = errors
        .iter()
        .find(|e| {
            e.message
                .contains("\"weak\" is a [[tls_policy]] with errors")
        })
        .unwrap_or_else(|| panic!("{errors:?}"));
    assert!(!named.message.contains("unknown"), "{}", named.message);
    let text = text.replace("tls_policy = \"weak\"", "tls_policy = \"tls13\"");
    assert_eq!(refused(&text).len(), 4, "{:?}", refused(&text));
}

#[test]
fn admin_off_loopback_needs_a_token() {
    let listener = format!("certificates = [\"www\"]\n{BACKEND}");
    let text = format!("[admin]\nbind = \"0.0.0.0:9901\"\n{HEAD}{listener}");
    assert_refused(&text, &[("admin.bind", "0.0.0.0:9901")]);
    assert!(refused(&text)[0].message.contains("admin.token_file"));

    let text = format!("[admin]\nbind = \"[::1]:9901\"\n{HEAD}{listener}");
    assert_eq!(accepted(&text).admin.bind, "[::1]:9901".parse().unwrap());

    let text = format!("[admin]\nbind = \"10.0.0.5:9901\"\ntoken_file = \"t\"\n{HEAD}{listener}");
    assert!(accepted(&text).admin.token_file.is_some());

    assert_refused(
        &format!("[admin]\nbind = \"nowhere\"\ntoken_file = \"\"\n{HEAD}{listener}"),
        &[
            ("admin.bind", "nowhere"),
            ("admin.token_file", "token_file"),
        ],
    );
}

#[test]
fn store_and_server_values_are_checked() {
    let text = r#"[server]
workers = 0
[store]
dir = ""
max_server_certificates = 0
max_ca_certificates = -5
[[listener]]
name = "web"
bind = "127.0.0.1:8443"
protocol = "http"
[[listener.backend]]
address = "a:1"
"#;
    assert_refused(
        text,
        &[
            ("server.workers", "workers"),
            ("store.dir", "dir"),
            ("store.max_server_certificates", "max_server"),
            ("store.max_ca_certificates", "max_ca"),
        ],
    );
}

#[test]
fn a_file_without_listeners_is_refused() {
    let errors = refused("[store]\ndir = \"certs\"\n");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].field, "listener");
}

#[test]
fn errors_in_different_sections_are_all_reported() {
    let text = r#"[store]
dir = "certs"
max_ca_certificates = 0
[admin]
bind = "1.2.3.4:9901"
[[listener]]
name = "web"
bind = "127.0.0.1:8443"
certificates = ["www"]
scheduler = "fast"
[[listener.backend]]
address = "app"
[[listener]]
name = "api"
bind = "127.0.0.1:8444"
certificates = ["www"]
[listener.health_check]
interval = "soon"
[[listener.backend]]
address = "app:80"
"#;
    assert_refused(
        text,
        &[
            ("store.max_ca_certificates", "max_ca"),
            ("admin.bind", "1.2.3.4"),
            ("listener[0].scheduler", "fast"),
            ("listener[0].backend[0].address", "\"app\""),
            ("listener[1].health_check.interval", "soon"),
        ],
    );
    let errors = refused(text);
    assert!(
        errors[4]
            .to_string()
            .contains("listener \"api\" health_check.interval")
    );
}

#[test]
fn a_single_table_where_entries_belong_names_the_double_bracket_header() {
    let text = "[store]\ndir = \"certs\"\n[listener]\nname = \"web\"\n";
    assert_refused(text, &[("listener", "[listener]")]);
    assert!(refused(text)[0].message.contains("[[listener]]"));
}

/// Every refusal has a position inside the text and a message; nothing panics.
fn check_refusals(text: &str) {
    if let Err(errors) = parse(Path::new(PATH), text) {
        assert!(!errors.is_empty());
        let lines = text.split('\n').count();
        for error in errors {
            let position = error.position.unwrap();
            assert!(position.line >= 1 && position.line <= lines, "{error}");
            assert!(position.column >= 1, "{error}");
            assert!(!error.message.is_empty(), "{error:?}");
        }
    }
}

proptest::proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in "[\\[\\]a-z_=\"'0-9.:,/ \n#{}ü-]{0,300}") {
        check_refusals(&text);
    }

    #[test]
    fn edited_example_never_panics(at in 0usize..10_000, insert in "[\\[\\]a-z_=\"0-9.:, \n#{}-]{0,12}") {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/tlsgate.toml");
        let mut text = std::fs::read_to_string(path).unwrap();
        let mut at = at % (text.len() + 1);
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text.insert_str(at, &insert);
        check_refusals(&text);
    }
}
