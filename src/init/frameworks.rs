//! What `init` reads beyond app objects: a Django project (manage.py and its
//! settings module), a Procfile's `web:` line, the FastAPI entrypoint a
//! pyproject declares, and the servers that dependencies' extras bring.

use super::Launch;
use std::path::Path;

/// A Django project: `manage.py` naming its settings module
/// (`os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")`)
/// beside a `wsgi.py`: (launch by gunicorn, settings module).
pub fn django(dir: &Path) -> Option<(Launch, String)> {
    let manage = std::fs::read_to_string(dir.join("manage.py")).ok()?;
    let line = manage
        .lines()
        .find(|l| l.contains("DJANGO_SETTINGS_MODULE"))?;
    let settings = line
        .split(['"', '\''])
        .map(str::trim)
        .filter(|s| !s.is_empty() && *s != "DJANGO_SETTINGS_MODULE")
        .find(|s| {
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        })?
        .to_string();
    let package = settings.rsplit_once('.').map_or("", |(p, _)| p);
    let wsgi = if package.is_empty() {
        "wsgi".to_string()
    } else {
        format!("{package}.wsgi")
    };
    if !dir.join(wsgi.replace('.', "/") + ".py").is_file() {
        return None;
    }
    Some((
        Launch::Wsgi {
            target: format!("{wsgi}:application"),
            framework: "Django",
            file: "manage.py".into(),
        },
        settings,
    ))
}

/// The `web:` line of a `Procfile`, as the image's command: split into
/// words with `$PORT` set to 8000 when it uses no other shell feature,
/// else run by `/bin/sh -c` with `PORT=8000` in the env.
pub fn procfile(dir: &Path) -> Option<(Vec<String>, bool)> {
    let text = std::fs::read_to_string(dir.join("Procfile")).ok()?;
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("web:"))?
        .trim();
    if line.is_empty() {
        return None;
    }
    let plain = line.replace("${PORT}", "8000").replace("$PORT", "8000");
    let shell_free = !plain.contains(|c: char| "$`\"'\\|&;<>(){}*?~".contains(c));
    if shell_free {
        Some((
            plain.split_whitespace().map(str::to_string).collect(),
            false,
        ))
    } else {
        Some((vec!["/bin/sh".into(), "-c".into(), line.to_string()], true))
    }
}

/// `[tool.fastapi] entrypoint = "pkg.main:app"` (the FastAPI CLI's setting).
pub fn fastapi_entrypoint(pyproject: Option<&toml::Table>) -> Option<Launch> {
    let target = pyproject?
        .get("tool")?
        .get("fastapi")?
        .get("entrypoint")?
        .as_str()?;
    let (module, _) = target.split_once(':')?;
    Some(Launch::Asgi {
        target: target.to_string(),
        framework: "FastAPI",
        file: format!("{} (pyproject.toml)", module.replace('.', "/") + ".py"),
    })
}

/// Servers a requirement's extras bring (`fastapi[standard]` → uvicorn).
pub fn servers_from_extras(spec: &str) -> Vec<String> {
    let name = super::requirement_name(spec);
    let extras = spec
        .split_once('[')
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(extras, _)| extras.to_ascii_lowercase())
        .unwrap_or_default();
    let has = |extra: &str| extras.split(',').any(|e| e.trim().starts_with(extra));
    let mut out = Vec::new();
    if name == "fastapi" && (has("standard") || has("all")) {
        out.push("uvicorn".to_string());
    }
    if name == "uvicorn" {
        out.push("uvicorn".to_string());
    }
    out
}

/// The names (normalised) of every package in the `uv.lock` at `root`:
/// what the project really installs, transitive dependencies included.
pub fn locked_names(root: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(root.join("uv.lock")) else {
        return Vec::new();
    };
    let Ok(doc) = text.parse::<toml::Table>() else {
        return Vec::new();
    };
    doc.get("package")
        .and_then(|p| p.as_array())
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("name")?.as_str())
        .map(|n| n.to_ascii_lowercase().replace(['_', '.'], "-"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_procfiles_and_extras() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("Procfile"),
            "release: flask db upgrade\nweb: gunicorn app:app --bind 0.0.0.0:$PORT\n",
        )
        .unwrap();
        let (cmd, shell) = procfile(dir.path()).unwrap();
        assert_eq!(cmd, ["gunicorn", "app:app", "--bind", "0.0.0.0:8000"]);
        assert!(!shell);
        std::fs::write(
            dir.path().join("Procfile"),
            "web: cd src && gunicorn app:app\n",
        )
        .unwrap();
        let (cmd, shell) = procfile(dir.path()).unwrap();
        assert_eq!(cmd[..2], ["/bin/sh", "-c"]);
        assert!(shell);
        assert_eq!(servers_from_extras("fastapi[standard]>=0.110"), ["uvicorn"]);
        assert!(servers_from_extras("fastapi>=0.110").is_empty());
    }
}
