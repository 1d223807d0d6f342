//! The files in deploy/ as their users run them: the systemd unit passes
//! `systemd-analyze verify` and the server speaks the notify protocol;
//! compose.yaml, the Dockerfile and the Kubernetes manifests agree with the
//! configs they ship (ports, volumes, probes, secret mounts, non-root);
//! and the shipped configs start and forward for real.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{backend, bin, curl, need, ok_stdout, spawn, spawn_with_env};
use tlsgate_test_pki::{KeyKind, TestPki, Validity};
use toml_edit::{DocumentMut, value};
use yaml_rust2::{Yaml, YamlLoader};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(relative: &str) -> String {
    let path = repo().join(relative);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(relative: &str) -> Yaml {
    let mut docs = YamlLoader::load_from_str(&read(relative))
        .unwrap_or_else(|e| panic!("{relative} is not valid YAML: {e}"));
    assert_eq!(docs.len(), 1, "{relative}: one document");
    docs.remove(0)
}

fn toml(text: &str) -> toml::Table {
    text.parse().unwrap()
}

fn str_of<'a>(y: &'a Yaml, what: &str) -> &'a str {
    y.as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {y:?}"))
}

fn strings(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .map(|v| {
            v.iter()
                .filter_map(|i| i.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The port of a "host:port" bind string.
fn port_of(bind: &str) -> u16 {
    bind.rsplit(':').next().unwrap().parse().unwrap()
}

fn listener(config: &toml::Table) -> &toml::Table {
    config["listener"].as_array().unwrap()[0]
        .as_table()
        .unwrap()
}

fn admin_bind(config: &toml::Table) -> &str {
    config["admin"]["bind"].as_str().unwrap()
}

fn store_dir(config: &toml::Table) -> &str {
    config["store"]["dir"].as_str().unwrap()
}

/// Seconds of a "30s" duration.
fn seconds(text: &str) -> u64 {
    text.strip_suffix('s').unwrap().parse().unwrap()
}

fn drain_seconds(config: &toml::Table) -> u64 {
    seconds(
        listener(config)["timeouts"]["shutdown_drain"]
            .as_str()
            .unwrap(),
    )
}

// ----------------------------------------------------------------- systemd

/// The unit's `Key=value` lines (all of them, in order).
fn unit_values(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|line| line.strip_prefix(&format!("{key}=")))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify_and_has_what_the_issue_asks() {
    need("systemd-analyze");
    let unit = read("deploy/systemd/tlsgate.service");
    // verify insists that ExecStart's binary exists; the unit names the
    // installed path, so check a copy naming the binary under test instead.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("tlsgate.service");
    assert!(unit.contains("/usr/local/bin/tlsgate serve"));
    fs::write(
        &copy,
        unit.replace("/usr/local/bin/tlsgate", bin().to_str().unwrap()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {stderr}");
    assert!(
        !stderr.contains("tlsgate.service"),
        "no warnings about the unit: {stderr}"
    );

    let one = |key: &str| {
        let values = unit_values(&unit, key);
        assert_eq!(values.len(), 1, "{key}= once: {values:?}");
        values[0].clone()
    };
    assert_eq!(one("Type"), "notify");
    assert_eq!(one("ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(one("AmbientCapabilities"), "CAP_NET_BIND_SERVICE");
    assert_eq!(one("CapabilityBoundingSet"), "CAP_NET_BIND_SERVICE");
    assert_eq!(one("NoNewPrivileges"), "yes");
    assert_eq!(one("PrivateTmp"), "yes");
    assert_eq!(one("ProtectSystem"), "strict");
    assert_eq!(one("RestartPreventExitStatus"), "78");
    let user = one("User");
    assert!(!user.is_empty() && user != "root");

    // The unit's config: the store is the one writable path, and the stop
    // timeout outlasts the drain.
    let config = toml(&read("deploy/systemd/tlsgate.toml"));
    assert!(one("ExecStart").ends_with("--config /etc/tlsgate/tlsgate.toml"));
    let writable = one("ReadWritePaths");
    assert!(
        Path::new(store_dir(&config)).starts_with(&writable),
        "store {} under ReadWritePaths={writable}",
        store_dir(&config)
    );
    assert_eq!(port_of(listener(&config)["bind"].as_str().unwrap()), 443);
    let stop = seconds(&one("TimeoutStopSec"));
    assert!(stop > drain_seconds(&config), "TimeoutStopSec {stop}s");
}

/// Reads notify datagrams until one contains `wanted`; returns it.
fn expect_notify(socket: &UnixDatagram, wanted: &str) -> String {
    let mut buffer = [0u8; 4096];
    loop {
        let n = socket
            .recv(&mut buffer)
            .unwrap_or_else(|e| panic!("no {wanted:?} from tlsgate within the timeout: {e}"));
        let message = String::from_utf8_lossy(&buffer[..n]).into_owned();
        eprintln!("  notify: {message:?}");
        if message.lines().any(|l| l == wanted) {
            return message;
        }
        assert!(
            !message.contains("STOPPING=1") || wanted == "STOPPING=1",
            "STOPPING before {wanted}"
        );
    }
}

/// The address in "STATUS=serving web on ADDRESS".
fn served_address(message: &str) -> SocketAddr {
    let status = message
        .lines()
        .find_map(|l| l.strip_prefix("STATUS="))
        .unwrap_or_else(|| panic!("READY comes with a STATUS: {message:?}"));
    status
        .strip_prefix("serving web on ")
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("{status:?}"))
        .parse()
        .unwrap()
}

#[test]
fn serve_tells_systemd_ready_after_bind_reloading_then_ready_on_sighup_and_stopping_on_sigterm() {
    let site = Site::new(ConfigShape::Test);
    let socket_path = site.dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let config = site.config_path();
    let mut proc = spawn_with_env(
        &["serve", "--config", config.to_str().unwrap()],
        &[("NOTIFY_SOCKET", socket_path.as_os_str())],
    );

    // READY=1 means bound: the listener accepts at once.
    let ready = expect_notify(&socket, "READY=1");
    let address = served_address(&ready);
    TcpStream::connect(address).expect("the listener accepts when READY=1 arrives");

    proc.signal("HUP");
    let reloading = expect_notify(&socket, "RELOADING=1");
    assert!(
        reloading.contains("MONOTONIC_USEC="),
        "RELOADING carries MONOTONIC_USEC for Type=notify-reload: {reloading:?}"
    );
    let ready = expect_notify(&socket, "READY=1");
    assert_eq!(served_address(&ready), address);
    assert!(!ready.contains("refused"), "{ready:?}");
    // One reload per SIGHUP: reading the config file during the reload is
    // not a change to it (a watcher that counted reads reloaded forever).
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut buffer = [0u8; 4096];
    if let Ok(n) = socket.recv(&mut buffer) {
        panic!(
            "nothing changed, yet: {:?}",
            String::from_utf8_lossy(&buffer[..n])
        );
    }
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();

    // A broken config (picked up by the file watcher) is refused, and the
    // status line says so; the listener keeps serving.
    let tmp = site.dir.path().join(".broken.tmp");
    fs::write(&tmp, "[[listener]]\nname = \"web\"\nbogus = 1\n").unwrap();
    fs::rename(&tmp, &config).unwrap();
    expect_notify(&socket, "RELOADING=1");
    let ready = expect_notify(&socket, "READY=1");
    assert!(ready.contains("the last reload was refused"), "{ready:?}");
    TcpStream::connect(address).expect("still serving");

    proc.signal("TERM");
    expect_notify(&socket, "STOPPING=1");
    assert!(proc.wait_exit().success());
}

#[test]
fn without_notify_socket_serve_runs_as_before() {
    // Containers and Kubernetes set no NOTIFY_SOCKET: nothing is sent,
    // nothing is logged about it.
    let site = Site::new(ConfigShape::Test);
    let config = site.config_path();
    let mut proc = spawn(&["serve", "--config", config.to_str().unwrap()]);
    proc.wait_line("serving");
    proc.signal("TERM");
    proc.wait_line("stopped");
    assert!(proc.wait_exit().success());
}

// ------------------------------------------------------ container, compose

/// Instructions of the Dockerfile's final stage, as (instruction, rest).
fn final_stage(dockerfile: &str) -> Vec<(String, String)> {
    let joined = dockerfile.replace("\\\n", " ");
    let lines: Vec<&str> = joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let start = lines.iter().rposition(|l| l.starts_with("FROM ")).unwrap();
    lines[start..]
        .iter()
        .map(|l| {
            let (instruction, rest) = l.split_once(' ').unwrap();
            (instruction.to_string(), rest.trim().to_string())
        })
        .collect()
}

#[test]
fn the_dockerfile_runs_as_non_root_with_a_healthz_healthcheck_and_the_shipped_config() {
    let dockerfile = read("deploy/Dockerfile");
    assert!(
        dockerfile.matches("\nFROM ").count() + usize::from(dockerfile.starts_with("FROM ")) >= 2,
        "multi-stage"
    );
    let stage = final_stage(&dockerfile);
    let get = |name: &str| -> Vec<&str> {
        stage
            .iter()
            .filter(|(i, _)| i == name)
            .map(|(_, r)| r.as_str())
            .collect()
    };
    let user = get("USER");
    assert_eq!(user.len(), 1);
    let uid: u32 = user[0]
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("a numeric user");
    assert_ne!(uid, 0, "non-root");

    let config = toml(&read("deploy/compose/tlsgate.toml"));
    let admin_port = port_of(admin_bind(&config));
    let health = get("HEALTHCHECK");
    assert_eq!(health.len(), 1);
    assert!(
        health[0].contains("\"healthcheck\"")
            && health[0].contains(&format!("http://127.0.0.1:{admin_port}/healthz")),
        "{}",
        health[0]
    );
    let exposed = get("EXPOSE").join(" ");
    let https_port = port_of(listener(&config)["bind"].as_str().unwrap());
    for port in [https_port, admin_port] {
        assert!(
            exposed.split(' ').any(|p| p == port.to_string()),
            "EXPOSE {port}"
        );
    }
    assert!(
        get("COPY").contains(&"deploy/compose/tlsgate.toml /etc/tlsgate/tlsgate.toml"),
        "the image carries the compose config as its default"
    );
    assert!(get("VOLUME").join(" ").contains(store_dir(&config)));
    assert!(get("CMD")[0].contains("\"/etc/tlsgate/tlsgate.toml\""));

    // The healthcheck command really exists and fails clearly with nothing listening.
    let out = Command::new(bin())
        .args(["healthcheck", "--url", "http://127.0.0.1:9/healthz"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect"));

    let ignore = read(".dockerignore");
    for must in ["target/", ".git/", "certs/", "deploy/admin.token"] {
        assert!(
            ignore.lines().any(|l| l == must),
            ".dockerignore lists {must}"
        );
    }
}

#[test]
fn compose_yaml_matches_the_config_it_mounts() {
    let compose = yaml("deploy/compose.yaml");
    let config = toml(&read("deploy/compose/tlsgate.toml"));
    let services = &compose["services"];
    let tlsgate = &services["tlsgate"];
    assert_eq!(
        str_of(&tlsgate["build"]["dockerfile"], "build.dockerfile"),
        "deploy/Dockerfile"
    );
    assert!(repo().join("deploy/Dockerfile").is_file());

    // HTTPS published to the listener's port; the admin port on loopback only.
    let ports = strings(&tlsgate["ports"]);
    let https = port_of(listener(&config)["bind"].as_str().unwrap());
    let admin = port_of(admin_bind(&config));
    assert!(ports.contains(&format!("443:{https}")), "{ports:?}");
    let admin_published: Vec<&String> = ports
        .iter()
        .filter(|p| p.ends_with(&format!(":{admin}")))
        .collect();
    assert_eq!(
        admin_published,
        [&format!("127.0.0.1:{admin}:{admin}")],
        "admin on the host's loopback only"
    );

    // The store is a named volume at the config's store dir; the config
    // folder is mounted where the command reads it.
    let volumes = strings(&tlsgate["volumes"]);
    let store = format!(":{}", store_dir(&config));
    let store_volume = volumes
        .iter()
        .find(|v| v.ends_with(&store))
        .unwrap_or_else(|| panic!("a volume at the store dir: {volumes:?}"));
    let volume_name = store_volume.split(':').next().unwrap();
    assert!(
        !compose["volumes"][volume_name].is_badvalue(),
        "{volume_name} is a named volume"
    );
    assert!(
        volumes.contains(&"./compose:/etc/tlsgate:ro".to_string()),
        "{volumes:?}"
    );
    assert!(repo().join("deploy/compose/tlsgate.toml").is_file());
    let command = strings(&tlsgate["command"]);
    assert!(
        command
            .windows(2)
            .any(|w| w == ["--config", "/etc/tlsgate/tlsgate.toml"]),
        "{command:?}"
    );

    // The token file is the compose secret.
    let secret = str_of(&tlsgate["secrets"][0], "secret");
    assert_eq!(
        config["admin"]["token_file"].as_str(),
        Some(format!("/run/secrets/{secret}").as_str())
    );
    assert!(!compose["secrets"][secret]["file"].is_badvalue());

    // Two port-80 backend services, exactly the config's backends.
    let backends: Vec<String> = listener(&config)["backend"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["address"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(backends.len(), 2);
    for address in &backends {
        let (service, port) = address.split_once(':').unwrap();
        assert_eq!(port, "80");
        assert!(
            strings(&services[service]["expose"]).contains(&"80".to_string()),
            "service {service} exposes 80"
        );
        assert!(strings(&tlsgate["depends_on"]).contains(&service.to_string()));
    }
    let grace = seconds(str_of(&tlsgate["stop_grace_period"], "stop_grace_period"));
    assert!(grace > drain_seconds(&config));

    // Where the compose tool is installed, it validates the file too.
    let has_compose = Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if has_compose {
        let out = Command::new("docker")
            .args(["compose", "-f"])
            .arg(repo().join("deploy/compose.yaml"))
            .args(["config", "--quiet", "--no-interpolate"])
            .env("COMPOSE_PROJECT_NAME", "tlsgate-test")
            .output()
            .unwrap();
        // The secret file is created by the operator (README); a missing
        // one is the only complaint allowed.
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() || stderr.contains("admin.token"),
            "docker compose config: {stderr}"
        );
    } else {
        eprintln!("docker compose is not installed here; YAML checks only");
    }
}

// -------------------------------------------------------------- Kubernetes

fn kube(kind: &str) -> Yaml {
    let file = match kind {
        "Deployment" => "deployment.yaml",
        "Service" => "service.yaml",
        "PodDisruptionBudget" => "pdb.yaml",
        "ConfigMap" => "configmap.yaml",
        _ => unreachable!(),
    };
    let doc = yaml(&format!("deploy/kubernetes/{file}"));
    assert_eq!(str_of(&doc["kind"], "kind"), kind);
    doc
}

fn named<'a>(list: &'a Yaml, name: &str) -> &'a Yaml {
    list.as_vec()
        .unwrap()
        .iter()
        .find(|i| i["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no item named {name}"))
}

#[test]
fn the_kubernetes_manifests_agree_with_each_other_and_the_config() {
    let deployment = kube("Deployment");
    let service = kube("Service");
    let pdb = kube("PodDisruptionBudget");
    let configmap = kube("ConfigMap");
    let config_text = str_of(&configmap["data"]["tlsgate.toml"], "tlsgate.toml");
    let config = toml(config_text);

    let spec = &deployment["spec"];
    assert!(spec["replicas"].as_i64().unwrap() >= 2, "several replicas");
    let labels = &spec["template"]["metadata"]["labels"];
    for selector in [
        &spec["selector"]["matchLabels"],
        &pdb["spec"]["selector"]["matchLabels"],
        &service["spec"]["selector"],
    ] {
        for (key, value) in selector.as_hash().unwrap() {
            assert_eq!(
                &labels[key.as_str().unwrap()],
                value,
                "selector matches the pods"
            );
        }
    }
    assert!(
        !pdb["spec"]["maxUnavailable"].is_badvalue() || !pdb["spec"]["minAvailable"].is_badvalue()
    );

    let pod = &spec["template"]["spec"];
    let container = &pod["containers"][0];
    let pod_security = &pod["securityContext"];
    assert_eq!(pod_security["runAsNonRoot"].as_bool(), Some(true));
    assert_ne!(pod_security["runAsUser"].as_i64(), Some(0));
    assert!(pod_security["runAsUser"].as_i64().is_some());
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"].as_bool(),
        Some(false)
    );

    // Ports: the listener's and the admin API's, and the Service's target.
    let port = |name: &str| {
        named(&container["ports"], name)["containerPort"]
            .as_i64()
            .unwrap()
    };
    let https = port_of(listener(&config)["bind"].as_str().unwrap());
    let admin = port_of(admin_bind(&config));
    assert_eq!(port("https"), i64::from(https));
    assert_eq!(port("admin"), i64::from(admin));
    let service_port = &service["spec"]["ports"][0];
    assert_eq!(service_port["port"].as_i64(), Some(443));
    assert_eq!(str_of(&service_port["targetPort"], "targetPort"), "https");

    // Probes on the admin port, at endpoints the admin API serves.
    assert_eq!(
        str_of(&container["readinessProbe"]["httpGet"]["path"], "readiness"),
        "/readyz"
    );
    assert_eq!(
        str_of(&container["livenessProbe"]["httpGet"]["path"], "liveness"),
        "/healthz"
    );
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(str_of(&container[probe]["httpGet"]["port"], probe), "admin");
    }

    // The tls Secret is mounted as the store folder of the listener's certificate.
    let certificate = listener(&config)["certificates"][0].as_str().unwrap();
    let mounts = &container["volumeMounts"];
    let volumes = &pod["volumes"];
    let site = mounts
        .as_vec()
        .unwrap()
        .iter()
        .find(|m| {
            !volumes_entry(volumes, &m["name"])["secret"].is_badvalue()
                && str_of(&m["mountPath"], "mountPath").contains("/server/")
        })
        .expect("a Secret mounted in the store");
    assert_eq!(
        str_of(&site["mountPath"], "mountPath"),
        format!("{}/server/{certificate}", store_dir(&config))
    );
    // Mode 0440 with fsGroup: readable by the non-root user.
    let secret = &volumes_entry(volumes, &site["name"])["secret"];
    assert_eq!(secret["defaultMode"].as_i64(), Some(0o440));
    assert!(pod_security["fsGroup"].as_i64().is_some());

    // The config comes from the ConfigMap, mounted as a folder (so its
    // ..data swap reaches the watcher) where the args read it.
    let config_mount = mounts
        .as_vec()
        .unwrap()
        .iter()
        .find(|m| !volumes_entry(volumes, &m["name"])["configMap"].is_badvalue())
        .expect("the ConfigMap is mounted");
    let folder = str_of(&config_mount["mountPath"], "mountPath");
    assert!(
        config_mount["subPath"].is_badvalue(),
        "a subPath mount never updates"
    );
    let args = strings(&container["args"]);
    assert!(
        args.windows(2)
            .any(|w| w[0] == "--config" && w[1] == format!("{folder}/tlsgate.toml")),
        "{args:?}"
    );
    let admin_token = config["admin"]["token_file"].as_str().unwrap();
    assert!(
        mounts.as_vec().unwrap().iter().any(|m| {
            admin_token.starts_with(str_of(&m["mountPath"], "mountPath"))
                && !volumes_entry(volumes, &m["name"])["secret"].is_badvalue()
        }),
        "the admin token file {admin_token} comes from a mounted Secret"
    );

    // The grace period covers the preStop pause and the drain.
    let pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_i64()
        .expect("a preStop sleep");
    let grace = pod["terminationGracePeriodSeconds"].as_i64().unwrap();
    let drain = i64::try_from(drain_seconds(&config)).unwrap();
    assert!(grace > pause + drain, "grace {grace} > {pause} + {drain}");

    // Every manifest is in the kustomization.
    let kustomization = yaml("deploy/kubernetes/kustomization.yaml");
    let resources = strings(&kustomization["resources"]);
    for file in [
        "configmap.yaml",
        "deployment.yaml",
        "service.yaml",
        "pdb.yaml",
    ] {
        assert!(resources.contains(&file.to_string()), "{file}");
    }
}

fn volumes_entry<'a>(volumes: &'a Yaml, name: &Yaml) -> &'a Yaml {
    named(volumes, name.as_str().unwrap())
}

// ------------------------------------------- the shipped configs, for real

/// Which config a [`Site`] runs.
enum ConfigShape {
    /// A minimal test config on loopback.
    Test,
    /// deploy/compose/tlsgate.toml with only its addresses and paths localised.
    Compose,
}

/// A temporary folder with a store holding the certificate "site".
struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new(shape: ConfigShape) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::now_real();
        let root = pki.root("Deploy Test Root", KeyKind::EcdsaP256);
        let leaf = root.server(&["localhost"], KeyKind::EcdsaP256, Validity::Normal);
        let server = dir.path().join("certs/server/site");
        fs::create_dir_all(&server).unwrap();
        fs::write(server.join("cert.pem"), leaf.cert_pem()).unwrap();
        fs::write(server.join("key.pem"), leaf.key().pkcs8_pem()).unwrap();
        fs::write(dir.path().join("root.pem"), root.cert().cert_pem()).unwrap();
        let site = Site { dir };
        let backends = [backend(1, Duration::ZERO), backend(2, Duration::ZERO)];
        let text = match shape {
            ConfigShape::Test => format!(
                "[store]\ndir = \"certs\"\n[admin]\nbind = \"127.0.0.1:0\"\n\
                 [[listener]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\nprotocol = \"https\"\n\
                 certificates = [\"site\"]\n[[listener.backend]]\naddress = \"{}\"\n",
                backends[0]
            ),
            ConfigShape::Compose => site.localise(&read("deploy/compose/tlsgate.toml"), &backends),
        };
        fs::write(site.config_path(), text).unwrap();
        site
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("tlsgate.toml")
    }

    /// A shipped config with what only exists inside the container
    /// replaced: the store and token paths, 0.0.0.0 binds (loopback, port
    /// 0 here), and the backend service names. Everything else is kept.
    fn localise(&self, shipped: &str, backends: &[SocketAddr]) -> String {
        let mut doc: DocumentMut = shipped.parse().unwrap();
        doc["store"]["dir"] = value(self.dir.path().join("certs").to_str().unwrap());
        if doc["admin"].get("token_file").is_some() {
            let token = self.dir.path().join("admin.token");
            fs::write(&token, "deploy-test-token\n").unwrap();
            doc["admin"]["token_file"] = value(token.to_str().unwrap());
        }
        doc["admin"]["bind"] = value("127.0.0.1:0");
        let listener = doc["listener"].as_array_of_tables_mut().unwrap();
        let listener = listener.get_mut(0).unwrap();
        listener["bind"] = value("127.0.0.1:0");
        let shipped_backends = listener["backend"].as_array_of_tables_mut().unwrap();
        assert_eq!(shipped_backends.len(), backends.len());
        for (entry, address) in shipped_backends.iter_mut().zip(backends) {
            entry["address"] = value(address.to_string());
        }
        doc.to_string()
    }

    fn get(&self, port: u16, path: &str) -> String {
        let out = curl(&[
            "--cacert",
            self.dir.path().join("root.pem").to_str().unwrap(),
            &format!("https://localhost:{port}{path}"),
        ]);
        ok_stdout(&out)
    }
}

#[test]
fn the_compose_config_starts_and_forwards_to_both_backends() {
    need("curl");
    let site = Site::new(ConfigShape::Compose);
    let config = site.config_path();
    let proc = spawn(&[
        "serve",
        "--config",
        config.to_str().unwrap(),
        "--log-format",
        "json",
    ]);
    let mut port = None;
    let mut admin = None;
    while port.is_none() || admin.is_none() {
        let line = proc.wait_line("\"address\"");
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        let address: SocketAddr = event["address"].as_str().unwrap().parse().unwrap();
        match event["message"]
            .as_str()
            .or(event["fields"]["message"].as_str())
        {
            Some("serving") => port = Some(address.port()),
            Some("admin API listening") => admin = Some(address),
            _ => {}
        }
    }
    let port = port.unwrap();
    let mut seen: Vec<String> = (0..4).map(|_| site.get(port, "/")).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(
        seen,
        ["backend 1\n", "backend 2\n"],
        "round robin over both"
    );

    // The image's HEALTHCHECK command, against this admin API.
    let admin = admin.unwrap();
    for path in ["/healthz", "/readyz"] {
        let out = Command::new(bin())
            .args(["healthcheck", "--url", &format!("http://{admin}{path}")])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The API itself wants the token from the secret file.
    let out = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("http://{admin}/v1/certificates"),
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "401");
}

#[test]
fn the_kubernetes_and_systemd_configs_pass_check_config_with_a_secret_shaped_store() {
    for (name, shipped) in [
        (
            "kubernetes",
            str_of(&kube("ConfigMap")["data"]["tlsgate.toml"], "toml").to_string(),
        ),
        ("systemd", read("deploy/systemd/tlsgate.toml")),
    ] {
        let site = Site::new(ConfigShape::Test);
        // What the kubelet mounts for a kubernetes.io/tls Secret: tls.crt and tls.key.
        let folder = site.dir.path().join("certs/server/site");
        fs::rename(folder.join("cert.pem"), folder.join("tls.crt")).unwrap();
        fs::rename(folder.join("key.pem"), folder.join("key.tmp")).unwrap();
        fs::rename(folder.join("key.tmp"), folder.join("tls.key")).unwrap();
        let backends: Vec<SocketAddr> = toml(&shipped)["listener"][0]["backend"]
            .as_array()
            .unwrap()
            .iter()
            .zip(9u16..)
            .map(|(_, port)| SocketAddr::from(([127, 0, 0, 1], port)))
            .collect();
        fs::write(site.config_path(), site.localise(&shipped, &backends)).unwrap();
        let out = Command::new(bin())
            .args([
                "check-config",
                "--config",
                site.config_path().to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
