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
    let s = load("admin_api_key = 'k1-0123456789abcdef'").unwrap();
    assert_eq!(s.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(
        s.database,
        Database::Sqlite {
            path: PathBuf::from("data/everestctl-api.db")
        }
    );
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
    let s = load("admin_api_keys = 'ops:secret1-0123456789, ci:secret2-0123456789'").unwrap();
    let names: Vec<_> = s.api_keys.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["ops", "ci"]);
    assert!(s.api_keys[0].matches("secret1-0123456789"));
    assert!(!s.api_keys[0].matches("secret2-0123456789"));
    assert!(!format!("{s:?}").contains("secret1-0123456789"));
    let err = load("admin_api_keys = 'ops:a-0123456789abcdef,ops:b-0123456789abcdef'")
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
    let err = load("admin_api_key = 'k-0123456789abcdef'\nport = 'abc'")
        .unwrap_err()
        .to_string();
    assert!(err.contains("PORT"), "{err}");
    let err = load("admin_api_key = 'k-0123456789abcdef'\nworker_concurrency = 0")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("WORKER_CONCURRENCY") && err.contains("outside"),
        "{err}"
    );
    let err = load("admin_api_key = 'k-0123456789abcdef'\nlog_format = 'xml'")
        .unwrap_err()
        .to_string();
    assert!(err.contains("LOG_FORMAT") && err.contains("json"), "{err}");
    let err = load("admin_api_key = 'k-0123456789abcdef'\nbogus_key = 1")
        .unwrap_err()
        .to_string();
    assert!(err.contains("bogus_key"), "{err}");
}

#[test]
fn database_url_is_a_sqlite_file_or_a_postgres_url() {
    let err = load("admin_api_key = 'k-0123456789abcdef'\ndatabase_url = 'mysql://x'")
        .unwrap_err()
        .to_string();
    assert!(err.contains("DATABASE_URL"), "{err}");
    let err = load("admin_api_key = 'k-0123456789abcdef'\ndatabase_url = 'sqlite::memory:'")
        .unwrap_err()
        .to_string();
    assert!(err.contains("in-memory"), "{err}");
    let s = load(
        "admin_api_key = 'k-0123456789abcdef'\ndatabase_url = 'sqlite:///var/lib/x.db?mode=rwc'",
    )
    .unwrap();
    assert_eq!(
        s.database,
        Database::Sqlite {
            path: PathBuf::from("/var/lib/x.db")
        }
    );
}

#[test]
fn postgres_urls_of_every_form_sqlx_accepts_select_postgres() {
    for url in [
        "postgres://api:s3cret-pw@db.example:5432/everest",
        "postgresql://db/everest?sslmode=require",
        "postgres:///everest?host=/run/postgresql",
    ] {
        let s = load(&format!(
            "admin_api_key = 'k-0123456789abcdef'\ndatabase_url = '{url}'\ndatabase_pool_size = 7"
        ))
        .unwrap_or_else(|e| panic!("{url}: {e}"));
        let Database::Postgres {
            url: got,
            pool_size,
        } = &s.database
        else {
            panic!("{url} did not select PostgreSQL: {:?}", s.database);
        };
        assert_eq!(got.expose(), url);
        assert_eq!(*pool_size, 7);
        // The settings may be printed: the password is not.
        let shown = format!("{s:?}");
        assert!(!shown.contains("s3cret-pw"), "{shown}");
    }
    let err = load(
        "admin_api_key = 'k-0123456789abcdef'\ndatabase_url = 'postgres://db/x'\ndatabase_pool_size = 0",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("DATABASE_POOL_SIZE"), "{err}");
    let err = load(
        "admin_api_key = 'k-0123456789abcdef'\ndatabase_url = 'postgres://u:pw-secret@db:notaport/x'",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("DATABASE_URL"), "{err}");
    assert!(!err.contains("pw-secret"), "{err}");
}

#[test]
fn private_tmp_dir_on_postgres_defaults_to_the_system_temp_folder() {
    let s = load("admin_api_key = 'k-0123456789abcdef'\ndatabase_url = 'postgres://db/x'").unwrap();
    assert_eq!(
        s.private_tmp_dir,
        std::env::temp_dir().join("everestctl-api").join("tmp")
    );
}

#[test]
fn private_tmp_dir_defaults_to_the_database_folder() {
    let s = load("admin_api_key = 'k-0123456789abcdef'\ndatabase_url = 'sqlite:///var/lib/x.db'")
        .unwrap();
    assert_eq!(s.private_tmp_dir, PathBuf::from("/var/lib/tmp"));
    let s = load("admin_api_key = 'k-0123456789abcdef'\nprivate_tmp_dir = '/run/everestctl-api'")
        .unwrap();
    assert_eq!(s.private_tmp_dir, PathBuf::from("/run/everestctl-api"));
}

#[test]
fn operators_and_rbac_command() {
    let s = load("admin_api_key = 'k-0123456789abcdef'\ndefault_operators = 'mysql, mongodb'\neverest_rbac_apply_cmd = 'apply --file {file}'")
        .unwrap();
    assert!(
        s.default_operators.mysql && s.default_operators.mongodb && !s.default_operators.postgresql
    );
    assert_eq!(s.rbac, RbacMode::Command("apply --file {file}".into()));
    assert!(load("admin_api_key = 'k-0123456789abcdef'\ndefault_operators = 'redis'").is_err());
    assert!(load("admin_api_key = 'k-0123456789abcdef'\ndefault_operators = ''").is_err());
}

const ADMIN: &str = "admin_api_keys = 'ops:ops-key-0123456789'\n";

#[test]
fn keys_shorter_than_16_characters_are_refused_and_the_message_says_so() {
    let err = load("admin_api_keys = 'ops:short-key'")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ADMIN_API_KEYS") && err.contains("at least 16") && !err.contains("short-key"),
        "{err}"
    );
    let err = load("admin_api_key = 'fifteen-chars-k'")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ADMIN_API_KEY ") && err.contains("15 characters"),
        "{err}"
    );
    let err = load(&format!("{ADMIN}read_api_keys = 'ro:tiny'"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("READ_API_KEYS") && err.contains("at least 16"),
        "{err}"
    );
    // Exactly 16 is enough.
    assert!(load("admin_api_keys = 'ops:sixteen-chars-ky'").is_ok());
}

#[test]
fn hashed_keys_are_accepted_and_compared_by_digest() {
    let hashed = keys::hashed("the-admin-key-0123456789");
    assert_eq!(hashed.len(), "sha256:".len() + 64);
    let s = load(&format!(
        "admin_api_keys = 'ops:{hashed}'\nread_api_keys = 'ro:{}'",
        keys::hashed("the-read-key-0123456789")
    ))
    .unwrap();
    let ops = keys::find(&s.api_keys, "the-admin-key-0123456789").unwrap();
    assert_eq!((ops.name.as_str(), ops.role), ("ops", Role::Admin));
    let ro = keys::find(&s.api_keys, "the-read-key-0123456789").unwrap();
    assert_eq!((ro.name.as_str(), ro.role), ("ro", Role::ReadOnly));
    // The entry itself is not a key.
    assert!(keys::find(&s.api_keys, &hashed).is_none());
    assert!(keys::find(&s.api_keys, "the-admin-key-012345678").is_none());
    // Upper-case hex is hex too; the single ADMIN_API_KEY takes the hashed form as well.
    let upper = format!("sha256:{}", hashed["sha256:".len()..].to_ascii_uppercase());
    let s = load(&format!("admin_api_key = '{upper}'")).unwrap();
    assert!(s.api_keys[0].matches("the-admin-key-0123456789"));
    // A hashed entry has no length to check: a short key's digest is accepted.
    assert!(load(&format!("admin_api_keys = 'ops:{}'", keys::hashed("short"))).is_ok());
}

#[test]
fn malformed_hashed_entries_are_refused() {
    let digest = &keys::hashed("the-admin-key-0123456789")["sha256:".len()..];
    for bad in [
        format!("sha256:{}", &digest[..63]),
        format!("sha256:{digest}0"),
        format!("sha256:{}g", &digest[..63]),
        "sha256:".to_string(),
    ] {
        let err = load(&format!("admin_api_keys = 'ops:{bad}'"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("64 hex digits") && err.contains("hash-key"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn the_kubernetes_secret_example_is_hashed_and_its_placeholder_is_refused() {
    let secret = include_str!("../../deploy/kubernetes/secret.yaml");
    let value = secret
        .lines()
        .find_map(|l| l.trim().strip_prefix("ADMIN_API_KEYS: "))
        .expect("secret.yaml sets ADMIN_API_KEYS")
        .trim_matches('"');
    assert!(value.starts_with("ops:sha256:"), "{value}");
    let err = load(&format!("admin_api_keys = '{value}'"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("REPLACE-ME placeholder"), "{err}");
}

#[test]
fn read_only_keys_have_their_role_and_a_name_has_one_role() {
    let s = load(&format!(
        "{ADMIN}read_api_keys = 'dashboard:dash-key-0123456789, audit:audit-key-0123456789'"
    ))
    .unwrap();
    let roles: Vec<_> = s
        .api_keys
        .iter()
        .map(|k| (k.name.as_str(), k.role))
        .collect();
    assert_eq!(
        roles,
        [
            ("ops", Role::Admin),
            ("dashboard", Role::ReadOnly),
            ("audit", Role::ReadOnly)
        ]
    );
    let err = load(&format!(
        "{ADMIN}read_api_keys = 'ops:other-key-0123456789'"
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("READ_API_KEYS") && err.contains("in both ADMIN_API_KEYS and READ_API_KEYS"),
        "{err}"
    );
    // The same key under two names would authenticate as whichever comes first.
    let err = load(&format!("{ADMIN}read_api_keys = 'ro:ops-key-0123456789'"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("same key") && !err.contains("ops-key-0123456789"),
        "{err}"
    );
    let err = load(&format!(
        "{ADMIN}read_api_keys = 'ro:{}'",
        keys::hashed("ops-key-0123456789")
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("same key"), "{err}");
    // Read-only keys alone leave nobody able to change anything.
    let err = load("read_api_keys = 'ro:read-key-0123456789'")
        .unwrap_err()
        .to_string();
    assert!(err.contains("no admin API key"), "{err}");
}

#[test]
fn auth_throttle_settings_are_validated() {
    let s = load(ADMIN).unwrap();
    assert_eq!(s.auth_failure_limit, 20);
    assert_eq!(s.auth_failure_window, std::time::Duration::from_secs(60));
    let s = load(&format!("{ADMIN}auth_failure_limit = 0")).unwrap();
    assert_eq!(s.auth_failure_limit, 0);
    let err = load(&format!("{ADMIN}auth_failure_window_seconds = 0"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("AUTH_FAILURE_WINDOW_SECONDS"), "{err}");
    let err = load(&format!("{ADMIN}auth_failure_limit = -1"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("AUTH_FAILURE_LIMIT"), "{err}");
}

#[test]
fn a_value_made_unused_by_another_setting_is_still_checked() {
    for toml in [
        "rbac_mode = 'bogus'",
        "rbac_mode = 'bogus'\neverest_rbac_apply_cmd = 'apply --file {file}'",
    ] {
        let err = load(&format!("admin_api_key = 'k-0123456789abcdef'\n{toml}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("RBAC_MODE") && err.contains("bogus"), "{err}");
    }
    let s =
        load("admin_api_key = 'k-0123456789abcdef'\nrbac_mode = 'skip'\neverest_rbac_apply_cmd = 'apply'").unwrap();
    assert_eq!(s.rbac, RbacMode::Command("apply".into()));
}

#[test]
fn namespace_lists_hold_only_namespace_names_and_prefixes() {
    let s = load(
        "admin_api_key = 'k-0123456789abcdef'\nnamespace_denylist = 'default, production'\nallowed_namespace_prefixes = 'tenant-,t'",
    )
    .unwrap();
    assert!(s.namespace_policy.parse("production").is_err());
    assert!(s.namespace_policy.parse("tenant-a").is_ok());
    for (key, value) in [
        ("namespace_denylist", "Production"),
        ("namespace_denylist", "kube_system"),
        ("allowed_namespace_prefixes", "Tenant-"),
        ("allowed_namespace_prefixes", "-x"),
        ("allowed_namespace_prefixes", "team_"),
    ] {
        let err = load(&format!(
            "admin_api_key = 'k-0123456789abcdef'\n{key} = '{value}'"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(&key.to_ascii_uppercase()) && err.contains(value),
            "{err}"
        );
    }
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
    assert_eq!(names, ["default", "ops", "ci", "dashboard"]);

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

#[test]
fn cli_env_passthrough_takes_names_but_never_the_services_settings() {
    let s = load("admin_api_key = 'k-0123456789abcdef'\ncli_env_passthrough = 'AWS_PROFILE, _X1,'")
        .unwrap();
    assert_eq!(&*s.cli_env_passthrough, ["AWS_PROFILE", "_X1"]);
    assert!(
        load("admin_api_key = 'k-0123456789abcdef'")
            .unwrap()
            .cli_env_passthrough
            .is_empty()
    );

    for (list, problem) in [
        (
            "AWS_PROFILE,ADMIN_API_KEYS",
            "ADMIN_API_KEYS is a setting of this service",
        ),
        ("database_url", "database_url is a setting of this service"),
        ("AWS=1", "\"AWS=1\" is not an environment variable name"),
        ("1X", "\"1X\" is not an environment variable name"),
    ] {
        let err = load(&format!(
            "admin_api_key = 'k-0123456789abcdef'\ncli_env_passthrough = '{list}'"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("CLI_ENV_PASSTHROUGH") && err.contains(problem),
            "{err}"
        );
    }
}
