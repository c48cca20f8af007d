use super::*;
use crate::layers::options::PinnedWheels as _;

#[test]
fn slugs() {
    assert_eq!(platform_slug("linux/arm64/v8"), "linux-arm64-v8");
}

/// A one-wheel bundle for a recipe in `dir`; returns (recipe, bundle dir).
fn fixture(dir: &Path) -> (Recipe, PathBuf) {
    std::fs::write(dir.join("requirements.txt"), "idna==3.20\n").unwrap();
    let recipe_path = dir.join("r.toml");
    let text = "base = \"python:3.13-alpine\"\nplatforms = [\"linux/amd64\"]\n[python]\nrequirements = [\"requirements.txt\"]\n";
    std::fs::write(&recipe_path, text).unwrap();
    let recipe = crate::recipe::load(&recipe_path).unwrap();
    let bundle = dir.join("b");
    std::fs::create_dir_all(bundle.join("wheels")).unwrap();
    std::fs::create_dir_all(bundle.join("requirements")).unwrap();
    let wheel = b"not really a wheel";
    let sha = Digest::of(wheel);
    std::fs::write(bundle.join("wheels/idna-3.20-py3-none-any.whl"), wheel).unwrap();
    let req = format!("idna==3.20 \\\n    --hash={sha}\n");
    std::fs::write(bundle.join("requirements/linux-amd64.txt"), &req).unwrap();
    let record = |path: &str, bytes: &[u8]| FileRecord {
        path: path.into(),
        sha256: Digest::of(bytes),
        size: bytes.len() as u64,
    };
    let manifest = Manifest {
        format: FORMAT,
        created_by: "test".into(),
        recipe: InputRecord {
            path: "r.toml".into(),
            sha256: Digest::of(text.as_bytes()),
        },
        base: BaseRecord {
            reference: "docker.io/library/python:3.13-alpine".into(),
            digest: Digest::of(b"index"),
            media_type: crate::oci::OCI_INDEX.into(),
            platforms: vec![PlatformRecord {
                platform: "linux/amd64".into(),
                manifest: Digest::of(b"manifest"),
                python_version: "3.13".into(),
                libc: "musl".into(),
                python_platform: "x86_64-unknown-linux-musl".into(),
                requirements: Some("requirements/linux-amd64.txt".into()),
            }],
        },
        inputs: recipe_inputs(&recipe).unwrap(),
        build_requirements: None,
        wheels: vec![WheelRecord {
            file: "wheels/idna-3.20-py3-none-any.whl".into(),
            name: "idna".into(),
            version: "3.20".into(),
            sha256: sha,
            platforms: vec!["linux/amd64".into()],
        }],
        files: vec![
            record("requirements/linux-amd64.txt", req.as_bytes()),
            record("wheels/idna-3.20-py3-none-any.whl", wheel),
        ],
    };
    std::fs::write(
        bundle.join(MANIFEST_FILE),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    (recipe, bundle)
}

#[test]
fn opens_a_sound_bundle_and_names_what_is_wrong_with_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let (mut recipe, bundle) = fixture(dir.path());
    let opened = Bundle::open(&bundle, &recipe, dir.path()).unwrap();
    let pinned = opened.pinned(&recipe.platforms[0]).unwrap();
    assert!(pinned
        .requirements
        .ends_with("requirements/linux-amd64.txt"));

    let wheel = bundle.join("wheels/idna-3.20-py3-none-any.whl");
    std::fs::write(&wheel, b"another wheel").unwrap();
    let err = Bundle::open(&bundle, &recipe, dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`wheels/idna-3.20-py3-none-any.whl` does not match bundle.json"),
        "{err}"
    );
    assert!(err.contains("pins for `idna==3.20`"), "{err}");
    std::fs::remove_file(&wheel).unwrap();
    let err = Bundle::open(&bundle, &recipe, dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`wheels/idna-3.20-py3-none-any.whl` is missing"),
        "{err}"
    );

    std::fs::write(dir.path().join("requirements.txt"), "idna==3.21\n").unwrap();
    let err = Bundle::open(&bundle, &recipe, dir.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("`requirements.txt` changed"), "{err}");

    recipe.platforms = vec![Platform::parse("linux/arm64").unwrap()];
    let err = Bundle::open(&bundle, &recipe, dir.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("nothing for platform `linux/arm64`"), "{err}");
    recipe.base = crate::reference::Reference::parse("python:3.12-alpine").unwrap();
    let err = Bundle::open(&bundle, &recipe, dir.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("python:3.12-alpine"), "{err}");
    let err = Bundle::open(dir.path(), &recipe, dir.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a slipway bundle"), "{err}");
}
