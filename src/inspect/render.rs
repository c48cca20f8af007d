//! The human summary of an [`ImageReport`]: one block per platform with its
//! config, annotations, layers and the heaviest Python distributions.

use super::{ImageReport, PlatformReport};
use crate::progress::human;
use std::fmt::Write as _;

/// Distributions listed before the rest are summed into one line.
const TOP_DISTRIBUTIONS: usize = 15;
/// Width of the history column.
const HISTORY_WIDTH: usize = 60;

pub fn render(report: &ImageReport) -> String {
    let mut out = String::new();
    let _ = write!(out, "{}", report.reference);
    if let Some(d) = &report.digest {
        let _ = write!(out, "  {d}");
    }
    let _ = writeln!(out, "\n  {}", report.media_type);
    field_map(&mut out, "annotations", &report.annotations);
    for p in &report.platforms {
        platform(&mut out, p);
    }
    out
}

fn platform(out: &mut String, p: &PlatformReport) {
    let _ = writeln!(out, "\n{}", p.platform);
    if let Some(d) = &p.manifest_digest {
        let _ = writeln!(out, "  {:<11} {d}", "manifest");
    }
    let _ = writeln!(out, "  {:<11} {}", "config", p.config_digest);
    if let Some(c) = &p.created {
        let _ = writeln!(out, "  {:<11} {c}", "created");
    }
    if p.manifest_digest.is_some() {
        let sboms: Vec<String> = p
            .sboms
            .iter()
            .map(|s| format!("{} ({})", s.digest, s.artifact_type))
            .collect();
        let text = if sboms.is_empty() {
            "none attached".to_string()
        } else {
            sboms.join(", ")
        };
        let _ = writeln!(out, "  {:<11} {text}", "SBOM");
    }
    let c = &p.config;
    let list = |v: &Option<Vec<String>>| v.as_ref().map(|v| format!("{v:?}"));
    for (key, value) in [
        ("Entrypoint", list(&c.entrypoint)),
        ("Cmd", list(&c.cmd)),
        ("WorkingDir", c.working_dir.clone()),
        ("User", c.user.clone()),
        (
            "Ports",
            (!c.exposed_ports.is_empty()).then(|| c.exposed_ports.join(", ")),
        ),
    ] {
        if let Some(value) = value {
            let _ = writeln!(out, "  {key:<11} {value}");
        }
    }
    for (i, env) in c.env.iter().enumerate() {
        let _ = writeln!(out, "  {:<11} {env}", if i == 0 { "Env" } else { "" });
    }
    field_map(out, "labels", &c.labels);
    field_map(out, "annotations", &p.annotations);

    layers(out, p);
    if let Some(b) = &p.python {
        python(out, b);
    }
    missing_libraries(out, p.missing_libraries.as_deref());
}

/// The layer table with the totals.
fn layers(out: &mut String, p: &PlatformReport) {
    let _ = writeln!(
        out,
        "  {:>3} {:>11} {:>13}  {:<19}  created by",
        "#", "compressed", "uncompressed", "digest"
    );
    for (i, l) in p.layers.iter().enumerate() {
        let _ = writeln!(
            out,
            "  {:>3} {:>11} {:>13}  {:<19}  {}",
            i,
            human(l.size),
            l.uncompressed_size.map(human).unwrap_or_else(|| "-".into()),
            &l.digest.as_str()[..19.min(l.digest.as_str().len())],
            shorten(l.created_by.as_deref().unwrap_or("-"), HISTORY_WIDTH)
        );
    }
    let _ = writeln!(
        out,
        "  {:>3} {:>11} {:>13}",
        "",
        human(p.size),
        p.uncompressed_size.map(human).unwrap_or_else(|| "-".into())
    );
}

/// Site-packages by distribution, heaviest first.
fn python(out: &mut String, b: &super::python::Breakdown) {
    let _ = writeln!(
        out,
        "  Python: {} in {} distributions ({})",
        human(b.total_size),
        b.distributions.len(),
        b.site_packages.join(", ")
    );
    let heaviest = b.distributions.first().map_or(1, |d| d.size.max(1));
    for d in b.distributions.iter().take(TOP_DISTRIBUTIONS) {
        let bar = "█".repeat(((d.size * 20).div_ceil(heaviest)) as usize);
        let _ = writeln!(
            out,
            "    {:<28} {:>11}  {:<20}  {:>4} files, {} bytecode",
            shorten(&format!("{} {}", d.name, d.version), 28),
            human(d.size),
            bar,
            d.files,
            human(d.bytecode_size)
        );
    }
    let rest = &b.distributions[TOP_DISTRIBUTIONS.min(b.distributions.len())..];
    if !rest.is_empty() {
        let _ = writeln!(
            out,
            "    {:<28} {:>11}",
            format!("({} more)", rest.len()),
            human(rest.iter().map(|d| d.size).sum())
        );
    }
    if b.unowned_files > 0 {
        let _ = writeln!(
            out,
            "    {:<28} {:>11}  {} files no RECORD lists",
            "(unowned)",
            human(b.unowned_size),
            b.unowned_files
        );
    }
}

/// Extension modules whose shared libraries the image lacks (they fail at import).
fn missing_libraries(out: &mut String, missing: Option<&[crate::sharedlibs::MissingLib]>) {
    match missing {
        None => {}
        Some([]) => {
            let _ = writeln!(
                out,
                "  Shared libraries: every extension module's are in the image"
            );
        }
        Some(missing) => {
            let _ = writeln!(
                out,
                "  Shared libraries MISSING ({}; these modules fail at import):",
                missing.len()
            );
            for m in missing {
                let _ = writeln!(out, "    {}  needs {}", m.module, m.library);
            }
        }
    }
}

fn field_map(out: &mut String, title: &str, map: &std::collections::BTreeMap<String, String>) {
    if map.is_empty() {
        return;
    }
    let _ = writeln!(out, "  {title}:");
    for (k, v) in map {
        let _ = writeln!(out, "    {k} = {v}");
    }
}

/// At most `width` characters, an ellipsis marking the cut; newlines flattened.
fn shorten(text: &str, width: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= width {
        return flat;
    }
    let mut cut: String = flat.chars().take(width - 1).collect();
    cut.push('…');
    cut
}
