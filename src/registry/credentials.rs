//! Credentials from docker config.json (`auths`, `credHelpers`, `credsStore`).
