use figment::Figment;
use figment::providers::{Format, Serialized, Toml};

use super::*;

fn load(toml: &str) -> Result<Settings, ConfigError> {
    Settings::from_figment(
        Figment::from(Serialized::defaults(RawConfig::default())).merge(Toml::string(toml)),
    )
}

#[test]
fn defaults_with_a_key_are_valid() {
    let s = load("admin_api_key = 'k1'").unwrap();
    assert_eq!(s.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(s.database_path, PathBuf::from("data/everestctl-api.db"));
    assert_eq!(s.api_keys.len(), 1);
    assert_eq!(s.api_keys[0].name, "default");
    assert_eq!(s.worker_concurrency, 4);
    assert_eq!(s.rbac, RbacMode::ConfigMap);
    assert!(s.default_operators.postgresql && !s.default_operators.mysql);
}

#[test]
fn no_key_refuses_with_a_hint() {
    let err = load("").unwrap_err().to_string();
    assert!(err.contains("no admin API key"), "{err}");
    assert!(err.contains("ADMIN_API_KEY"), "{err}");
}

#[test]
fn named_keys_are_parsed_and_never_printed() {
    let s = load("admin_api_keys = 'ops:secret1, ci:secret2'").unwrap();
    let names: Vec<_> = s.api_keys.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["ops", "ci"]);
    assert!(s.api_keys[0].matches("secret1"));
    assert!(!s.api_keys[0].matches("secret2"));
    assert!(!format!("{s:?}").contains("secret1"));
    let err = load("admin_api_keys = 'ops:a,ops:b'")
        .unwrap_err()
        .to_string();
    assert!(err.contains("used twice"), "{err}");
    let err = load("admin_api_keys = 'ops:REPLACE-ME-with-openssl-rand-hex-32'")
        .unwrap_err()
        .to_string();
    assert!(err.contains("placeholder"), "{err}");
    let err = load("admin_api_keys = 'justakey'").unwrap_err().to_string();
    assert!(
        err.contains("ADMIN_API_KEYS") && !err.contains("justakey"),
        "{err}"
    );
}

#[test]
fn wrong_types_name_the_key() {
    let err = load("admin_api_key = 'k'\nport = 'abc'")
        .unwrap_err()
        .to_string();
    assert!(err.contains("PORT"), "{err}");
    let err = load("admin_api_key = 'k'\nworker_concurrency = 0")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("WORKER_CONCURRENCY") && err.contains("outside"),
        "{err}"
    );
    let err = load("admin_api_key = 'k'\nlog_format = 'xml'")
        .unwrap_err()
        .to_string();
    assert!(err.contains("LOG_FORMAT") && err.contains("json"), "{err}");
    let err = load("admin_api_key = 'k'\nbogus_key = 1")
        .unwrap_err()
        .to_string();
    assert!(err.contains("bogus_key"), "{err}");
}

#[test]
fn database_url_must_be_a_sqlite_file() {
    let err = load("admin_api_key = 'k'\ndatabase_url = 'postgres://x'")
        .unwrap_err()
        .to_string();
    assert!(err.contains("DATABASE_URL"), "{err}");
    let err = load("admin_api_key = 'k'\ndatabase_url = 'sqlite::memory:'")
        .unwrap_err()
        .to_string();
    assert!(err.contains("in-memory"), "{err}");
    let s = load("admin_api_key = 'k'\ndatabase_url = 'sqlite:///var/lib/x.db?mode=rwc'").unwrap();
    assert_eq!(s.database_path, PathBuf::from("/var/lib/x.db"));
}

#[test]
fn private_tmp_dir_defaults_to_the_database_folder() {
    let s = load("admin_api_key = 'k'\ndatabase_url = 'sqlite:///var/lib/x.db'").unwrap();
    assert_eq!(s.private_tmp_dir, PathBuf::from("/var/lib/tmp"));
    let s = load("admin_api_key = 'k'\nprivate_tmp_dir = '/run/everestctl-api'").unwrap();
    assert_eq!(s.private_tmp_dir, PathBuf::from("/run/everestctl-api"));
}

#[test]
fn operators_and_rbac_command() {
    let s = load("admin_api_key = 'k'\ndefault_operators = 'mysql, mongodb'\neverest_rbac_apply_cmd = 'apply --file {file}'")
        .unwrap();
    assert!(
        s.default_operators.mysql && s.default_operators.mongodb && !s.default_operators.postgresql
    );
    assert_eq!(s.rbac, RbacMode::Command("apply --file {file}".into()));
    assert!(load("admin_api_key = 'k'\ndefault_operators = 'redis'").is_err());
    assert!(load("admin_api_key = 'k'\ndefault_operators = ''").is_err());
}

/// `config.example.toml` with every commented-out `# key = value` line uncommented.
fn example_uncommented() -> String {
    let keys: Vec<String> = raw::ENV_KEYS
        .iter()
        .map(|k| k.to_ascii_lowercase())
        .collect();
    include_str!("../../config.example.toml")
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest)
                if rest
                    .split_once(" = ")
                    .is_some_and(|(key, _)| keys.iter().any(|k| k == key)) =>
            {
                rest
            }
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn example_config_names_every_key_and_its_variable() {
    let example = include_str!("../../config.example.toml");
    for env in raw::ENV_KEYS {
        let key = env.to_ascii_lowercase();
        assert!(
            example.contains(&format!("\n# {key} = ")),
            "config.example.toml has no `# {key} = ...` line"
        );
        assert!(
            example.contains(&format!("# {env}: ")),
            "config.example.toml does not describe {env}"
        );
    }
}

#[test]
fn example_config_is_valid_and_shows_the_defaults() {
    let text = example_uncommented();
    let settings = load(&text).unwrap_or_else(|e| panic!("config.example.toml: {e}"));
    let names: Vec<_> = settings.api_keys.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["default", "ops", "ci"]);

    // Every key that has a default shows exactly that default.
    let shown: RawConfig = Figment::from(Toml::string(&text)).extract().unwrap();
    let shown = serde_json::to_value(shown).unwrap();
    let defaults = serde_json::to_value(RawConfig::default()).unwrap();
    for (key, default) in defaults.as_object().unwrap() {
        if !default.is_null() {
            assert_eq!(&shown[key], default, "config.example.toml shows {key}");
        }
    }
}
