//! Concurrent builds sharing one cache dir (issue 6, item 4): six builds
//! started at once on a cold cache — two recipes with different app
//! sources, five pushing to one registry, one writing an OCI layout — all
//! succeed, pushes of one recipe give one digest, the same as that recipe
//! built alone on its own cache, and the shared cache is left consistent.
//! (Every push uses tag `1`, in its own repository: the tag becomes the
//! image's `version` annotation.)

#[path = "support/builds.rs"]
mod builds;
mod common;

use builds::*;
use common::registry::Registry;
use std::process::{Child, Stdio};

#[test]
fn six_builds_at_once_share_one_cache() {
    if missing_prerequisites() {
        return;
    }
    let lone_a = seed().digest.clone();
    // Seven cold builds' worth of work on this machine, scaled from its own
    // measured cold build (the seed's).
    let limit = scaled_limit(7);
    eprintln!(
        "a cold build took {:?} here: each build may take up to {limit:?}",
        seed().build_time
    );
    let registry = Registry::start();
    push_alpine(&registry);
    let work = tempfile::tempdir().unwrap();
    let recipe_a = make_recipe(&work.path().join("a"), "seed");
    let recipe_b = make_recipe(&work.path().join("b"), "beta");
    let shared = work.path().join("shared-cache");
    let layout = work.path().join("layout");

    // recipe, destination args, repository pushed to (if any)
    let mut plan: Vec<(&std::path::Path, Vec<String>, Option<String>)> = Vec::new();
    for (recipe, repos) in [
        (&recipe_a, ["a1", "a2", "a3"].as_slice()),
        (&recipe_b, ["b1", "b2"].as_slice()),
    ] {
        for repo in repos {
            let dest = format!("{}/team/{repo}:1", registry.addr());
            plan.push((
                recipe.as_path(),
                vec!["--push".into(), dest, "--json".into()],
                Some(format!("team/{repo}")),
            ));
        }
    }
    plan.push((
        recipe_a.as_path(),
        vec![
            "--oci-layout".into(),
            layout.display().to_string(),
            "--json".into(),
        ],
        None,
    ));

    let children: Vec<Child> = plan
        .iter()
        .map(|(recipe, args, _)| {
            slipway(recipe, &shared, registry.addr())
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // A B recipe built alone on its own cache, meanwhile.
    let lone_cache = work.path().join("lone-cache");
    let lone = slipway(&recipe_b, &lone_cache, registry.addr())
        .args([
            "--push".to_string(),
            format!("{}/lone/b:1", registry.addr()),
            "--json".into(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let outputs: Vec<_> = children
        .into_iter()
        .enumerate()
        .map(|(i, child)| wait_bounded(child, limit, &format!("concurrent build #{i}")))
        .collect();
    let lone_b = report(&wait_bounded(lone, limit, "the lone build of recipe B"))["digest"]
        .as_str()
        .unwrap()
        .to_string();

    let digests: Vec<String> = outputs
        .iter()
        .map(|out| report(out)["digest"].as_str().unwrap().to_string())
        .collect();
    assert_ne!(lone_a, lone_b, "the two recipes differ");
    let layer_digests = |out: &std::process::Output| -> Vec<String> {
        report(out)["platforms"][0]["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect()
    };
    for (((recipe, _, repo), digest), out) in plan.iter().zip(&digests).zip(&outputs) {
        let lone = if *recipe == recipe_a.as_path() {
            &lone_a
        } else {
            &lone_b
        };
        match repo {
            Some(repo) => {
                assert_eq!(
                    digest,
                    lone,
                    "a concurrent build of {} gives the lone build's digest",
                    recipe.display()
                );
                assert_eq!(
                    tag_digest(registry.addr(), repo, "1").as_ref(),
                    Some(digest)
                );
                assert_image_complete(registry.addr(), repo, digest);
            }
            // The layout has no `version` annotation, so another manifest,
            // but the very same layers as the pushes of its recipe.
            None => assert_eq!(layer_digests(out), layer_digests(&outputs[0])),
        }
    }
    skopeo_inspect_ok(&format!("oci:{}:latest", layout.display())).unwrap();
    check_cache(&shared, false);
    // The cache serves a rebuild entirely (every layer reused).
    let out = run_bounded(
        slipway(&recipe_b, &shared, registry.addr())
            .arg("--push")
            .arg(format!("{}/team/b3:1", registry.addr()))
            .arg("--json"),
        limit,
    );
    let again = report(&out);
    assert_eq!(again["digest"].as_str(), Some(lone_b.as_str()));
    let layers = again["platforms"][0]["layers"].as_array().unwrap();
    assert!(
        layers
            .iter()
            .filter(|l| l["kind"] != "base")
            .all(|l| l["reused"] == true),
        "{layers:?}"
    );
}
