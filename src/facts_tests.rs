use super::*;
use serde_json::json;

fn alpine_config() -> serde_json::Value {
    json!({"config": {"Env": ["PATH=/usr/local/bin:/usr/bin", "PYTHON_VERSION=3.13.14"]}})
}

fn scan(paths: &[&str]) -> LayerScan {
    LayerScan {
        paths: paths.iter().map(|p| (p.to_string(), None)).collect(),
        glibc: None,
    }
}

#[test]
fn official_alpine_facts() {
    let s = scan(&["lib/ld-musl-x86_64.so.1", "usr/local/bin/python3.13"]);
    let f = detect(
        "b",
        &Platform::host(),
        &alpine_config(),
        Some(&s),
        &StatedFacts::default(),
    )
    .unwrap();
    assert_eq!(f.version, "3.13");
    assert_eq!(f.libc, Libc::Musl);
    assert_eq!(f.site_packages, "/usr/local/lib/python3.13/site-packages");
    assert_eq!(f.interpreter, "/usr/local/bin/python3.13");
}

#[test]
fn version_from_layers_and_distro_python() {
    let mut s = scan(&["usr/bin/python3.11", "lib/x86_64-linux-gnu/libc.so.6"]);
    s.glibc = Some((2, 36));
    let f = detect(
        "b",
        &Platform::host(),
        &json!({}),
        Some(&s),
        &StatedFacts::default(),
    )
    .unwrap();
    assert_eq!((f.version.as_str(), f.prefix.as_str()), ("3.11", "/usr"));
    assert_eq!(
        f.libc,
        Libc::Glibc {
            major: 2,
            minor: 36
        }
    );
}

#[test]
fn contradictions_and_missing_python_are_errors() {
    let s = scan(&["lib/ld-musl-x86_64.so.1"]);
    let stated = StatedFacts {
        version: Some("3.12".into()),
        ..Default::default()
    };
    let e = detect("b", &Platform::host(), &alpine_config(), Some(&s), &stated).unwrap_err();
    assert!(matches!(e, FactsError::Contradiction { .. }), "{e}");
    let e = detect(
        "b",
        &Platform::host(),
        &json!({}),
        Some(&s),
        &StatedFacts::default(),
    )
    .unwrap_err();
    assert!(matches!(e, FactsError::NoPython { .. }));
    let stated = StatedFacts {
        libc: Some(Libc::Glibc {
            major: 2,
            minor: 36,
        }),
        ..Default::default()
    };
    assert!(detect("b", &Platform::host(), &alpine_config(), Some(&s), &stated).is_err());
    // The config says PYTHON_VERSION, the files have no interpreter.
    let e = detect(
        "b",
        &Platform::host(),
        &alpine_config(),
        Some(&s),
        &StatedFacts::default(),
    )
    .unwrap_err();
    assert!(matches!(e, FactsError::MissingInterpreter { .. }), "{e}");
    assert!(e.to_string().contains("`/usr/local/bin/python3.13`"), "{e}");
}

#[test]
fn official_histories_give_libc_without_a_scan() {
    let mut config = alpine_config();
    config["history"] =
        json!([{"created_by": "ADD alpine-minirootfs-3.22.2-x86_64.tar.gz / # buildkit"}]);
    assert!(!needs_scan(&config, &StatedFacts::default()));
    let f = detect(
        "b",
        &Platform::host(),
        &config,
        None,
        &StatedFacts::default(),
    )
    .unwrap();
    assert_eq!(f.libc, Libc::Musl);
    config["history"] =
        json!([{"created_by": "# debian.sh --arch 'amd64' out/ 'bookworm' '@1760918400'"}]);
    assert_eq!(
        history_libc_exact(&config),
        Some(Libc::Glibc {
            major: 2,
            minor: 36
        })
    );
    config["history"] = json!([{"created_by": "RUN apt-get install -y curl"}]);
    assert!(
        needs_scan(&config, &StatedFacts::default()),
        "glibc without a release: scan for its version"
    );
}

#[test]
fn stated_libc_is_checked_against_the_history_without_a_scan() {
    let mut config = alpine_config();
    config["history"] =
        json!([{"created_by": "ADD alpine-minirootfs-3.22.2-x86_64.tar.gz / # buildkit"}]);
    let stated = StatedFacts {
        libc: Some(Libc::Glibc {
            major: 2,
            minor: 36,
        }),
        ..Default::default()
    };
    let e = detect("b", &Platform::host(), &config, None, &stated).unwrap_err();
    assert!(e.to_string().contains("has `musl`"), "{e}");
    let stated = StatedFacts {
        libc: Some(Libc::Musl),
        ..Default::default()
    };
    assert!(detect("b", &Platform::host(), &config, None, &stated).is_ok());
}

#[test]
fn reads_glibc_versions() {
    assert_eq!(
        glibc_version_in(b"GNU C Library (Debian GLIBC 2.36-9) stable release version 2.36."),
        Some((2, 36))
    );
    assert_eq!(
        glibc_version_in(b"Package: libc6\nStatus: ok\nVersion: 2.36-9+deb12u7\n\n"),
        Some((2, 36))
    );
}
