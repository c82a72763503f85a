use super::*;

fn rules() -> Rules {
    Rules {
        namespaces: NamespacePolicy::new(vec!["blocked".into()], vec![]),
        default_operators: Operators {
            mongodb: false,
            postgresql: true,
            mysql: false,
        },
    }
}

fn parse(body: &str) -> Result<Plan, Vec<FieldError>> {
    serde_json::from_str::<BootstrapRequest>(body)
        .unwrap()
        .validate(&rules())
}

fn fields(body: &str) -> Vec<String> {
    parse(body)
        .unwrap_err()
        .into_iter()
        .map(|e| e.field)
        .collect()
}

#[test]
fn minimal_request_gets_defaults() {
    let plan = parse(r#"{"username":"alice"}"#).unwrap();
    let input: BootstrapInput = serde_json::from_value(plan.inputs.clone()).unwrap();
    assert_eq!(input.namespace, "alice");
    assert_eq!(
        input.operators,
        Operators {
            mongodb: false,
            postgresql: true,
            mysql: false
        }
    );
    assert_eq!(
        input.resources,
        Resources {
            cpu_cores: 2,
            ram_mb: 2048,
            disk_gb: 20,
            max_databases: None
        }
    );
    assert!(!input.take_ownership);
    assert!(plan.password_generated);
    assert!(plan.password.is_some());
    assert!(
        !plan
            .inputs
            .to_string()
            .contains(plan.password.unwrap().expose())
    );
}

#[test]
fn given_password_and_alias() {
    let plan = parse(r#"{"username":"bob_1","namespace":"team-b","password":"s3cret!!","operators":{"xtradb_cluster":true},"resources":{"max_databases":3}}"#).unwrap();
    assert!(!plan.password_generated);
    assert_eq!(plan.password.unwrap().expose(), "s3cret!!");
    let input: BootstrapInput = serde_json::from_value(plan.inputs).unwrap();
    assert!(input.operators.mysql && !input.operators.postgresql);
    assert_eq!(input.resources.max_databases, Some(3));
}

#[test]
fn every_rule_is_checked() {
    assert_eq!(fields(r#"{"username":"admin"}"#), ["username"]);
    assert_eq!(fields(r#"{"username":"a-b"}"#), ["username"]);
    // A username with capitals or underscores is not a namespace: an explicit one is needed.
    assert_eq!(fields(r#"{"username":"Bob_x"}"#), ["namespace"]);
    assert!(parse(r#"{"username":"Bob_x","namespace":"bob"}"#).is_ok());
    assert_eq!(fields(r#"{"username":"blocked"}"#), ["namespace"]);
    assert_eq!(
        fields(r#"{"username":"alice","namespace":"kube-x"}"#),
        ["namespace"]
    );
    assert_eq!(
        fields(r#"{"username":"alice","namespace":""}"#),
        ["namespace"]
    );
    assert_eq!(
        fields(r#"{"username":"alice","password":""}"#),
        ["password"]
    );
    assert_eq!(
        fields(r#"{"username":"alice","password":"short"}"#),
        ["password"]
    );
    assert_eq!(
        fields(
            r#"{"username":"alice","resources":{"cpu_cores":0,"ram_mb":100,"disk_gb":2000000,"max_databases":10001}}"#
        ),
        [
            "resources.cpu_cores",
            "resources.ram_mb",
            "resources.disk_gb",
            "resources.max_databases"
        ]
    );
    assert_eq!(
        fields(r#"{"username":"alice","operators":{"mysql":true,"xtradb_cluster":false}}"#),
        ["operators.xtradb_cluster"]
    );
}

#[test]
fn unknown_fields_are_rejected_by_serde() {
    assert!(serde_json::from_str::<BootstrapRequest>(r#"{"username":"a","nope":1}"#).is_err());
    assert!(
        serde_json::from_str::<BootstrapRequest>(
            r#"{"username":"alice","operators":{"redis":true}}"#
        )
        .is_err()
    );
}
