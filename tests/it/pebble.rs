//! A local ACME CA for the certificate tests (booted hosts and loopback).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::booted::BootedHost;

/// A local ACME CA: Debian's pebble (HTTPS with a CA made here for its
/// endpoint) and pebble-challtestsrv as its DNS, so validation is real
/// HTTP-01 against the names' web server. Both stopped by their pids.
pub struct Pebble {
    pub directory: String,
    /// The CA of pebble's own HTTPS endpoint (for the host's certbot).
    pub endpoint_ca: PathBuf,
    management: u16,
    dns_management: u16,
    processes: Vec<std::process::Child>,
    _dir: tempfile::TempDir,
}

impl Pebble {
    /// On the test machine's side of a booted host's link (10.231.N.1),
    /// validating on the standard ports.
    pub fn serve(host: &BootedHost) -> Pebble {
        let gateway = format!("{}.1", host.address.rsplit_once('.').unwrap().0);
        Pebble::serve_at(&gateway, 80, 443)
    }

    /// On `address`, validating HTTP-01 on `http_port` and TLS-ALPN-01 on
    /// `tls_port` of the address each name resolves to.
    pub fn serve_at(gateway: &str, http_port: u16, tls_port: u16) -> Pebble {
        Pebble::serve_issuing(gateway, http_port, tls_port, None)
    }

    /// `serve`, issuing certificates valid for `seconds` only (one that
    /// expires soon, for the monitoring's alert).
    pub fn serve_lasting(host: &BootedHost, seconds: u64) -> Pebble {
        let gateway = format!("{}.1", host.address.rsplit_once('.').unwrap().0);
        Pebble::serve_issuing(&gateway, 80, 443, Some(seconds))
    }

    fn serve_issuing(
        gateway: &str,
        http_port: u16,
        tls_port: u16,
        validity_seconds: Option<u64>,
    ) -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        let openssl = |args: &[&str]| {
            let status = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .stderr(std::process::Stdio::null())
                .status()
                .expect("openssl runs (apt-get install openssl)");
            assert!(status.success(), "openssl {args:?}");
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=pebble endpoint CA",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "endpoint.csr",
            "-subj",
            "/CN=pebble",
        ]);
        std::fs::write(
            dir.path().join("ext.cnf"),
            format!("subjectAltName=IP:{gateway},IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"),
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "endpoint.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "cert.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ]);
        let port = crate::loopback::free_port();
        let management = crate::loopback::free_port();
        let dns = crate::loopback::free_port();
        let dns_management = crate::loopback::free_port();
        let mut config = serde_json::json!({"pebble": {
            "listenAddress": format!("{gateway}:{port}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": dir.path().join("cert.pem"),
            "privateKey": dir.path().join("key.pem"),
            "httpPort": http_port, "tlsPort": tls_port, "ocspResponderURL": "",
            "externalAccountBindingRequired": false
        }});
        if let Some(seconds) = validity_seconds {
            config["pebble"]["certificateValidityPeriod"] = seconds.into();
        }
        std::fs::write(dir.path().join("pebble.json"), config.to_string()).unwrap();
        let quiet = || std::process::Stdio::null();
        let challtestsrv = Command::new("pebble-challtestsrv")
            .args([
                "-defaultIPv4",
                "",
                "-defaultIPv6",
                "",
                "-http01",
                "",
                "-https01",
                "",
            ])
            .args(["-tlsalpn01", ""])
            .arg("-dns01")
            .arg(format!("127.0.0.1:{dns}"))
            .arg("-management")
            .arg(format!("127.0.0.1:{dns_management}"))
            .stdout(quiet())
            .stderr(quiet())
            .spawn()
            .expect("pebble-challtestsrv runs (apt-get install pebble)");
        let pebble = Command::new("pebble")
            .arg("-config")
            .arg(dir.path().join("pebble.json"))
            .arg("-dnsserver")
            .arg(format!("127.0.0.1:{dns}"))
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(quiet())
            .stderr(quiet())
            .spawn()
            .expect("pebble runs (apt-get install pebble)");
        let served = Pebble {
            directory: format!("https://{gateway}:{port}/dir"),
            endpoint_ca: dir.path().join("ca.pem"),
            management,
            dns_management,
            processes: vec![challtestsrv, pebble],
            _dir: dir,
        };
        let started = Instant::now();
        while std::net::TcpStream::connect((gateway, port)).is_err()
            || std::net::TcpStream::connect(("127.0.0.1", dns_management)).is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "pebble never listened"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        served
    }

    /// Makes pebble's DNS resolve `name` to `address` when it validates.
    pub fn resolve(&self, name: &str, address: &str) {
        let added = Command::new("curl")
            .args(["-sf", "-X", "POST", "-d"])
            .arg(
                serde_json::json!({"host": format!("{name}."), "addresses": [address]}).to_string(),
            )
            .arg(format!("http://127.0.0.1:{}/add-a", self.dns_management))
            .status()
            .unwrap();
        assert!(added.success(), "pebble-challtestsrv add-a {name}");
    }

    /// The root that pebble's certificates chain to, as a PEM file.
    pub fn root(&self, into: &std::path::Path) -> PathBuf {
        let root = Command::new("curl")
            .args(["-sfk"])
            .arg(format!("https://127.0.0.1:{}/roots/0", self.management))
            .output()
            .unwrap();
        assert!(root.status.success(), "pebble's root");
        let path = into.join("pebble-root.pem");
        std::fs::write(&path, &root.stdout).unwrap();
        path
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for process in &mut self.processes {
            let _ = Command::new("kill").arg(process.id().to_string()).status();
            let _ = process.wait();
        }
    }
}
