//! Secrets in command output: checks run on the output as printed, while what is stored and
//! shown has every line that contains one of the job's secrets withheld whole, whichever step
//! printed it. Each test on both backends.

mod common;

use common::{Backend, TestApp};
use serde_json::{Value, json};

const WITHHELD: &str = "[line withheld: it contained a secret]";

/// Every response about the job that a client can read, as text.
async fn everything_shown(app: &TestApp, id: &str) -> String {
    let mut all = String::new();
    for path in [
        format!("/jobs/{id}"),
        format!("/jobs/{id}/result"),
        format!("/jobs/{id}/history"),
        "/jobs".to_string(),
    ] {
        let r = app.get(&path).await;
        assert!(r.status().is_success() || r.status() == 409, "{path}");
        all.push_str(&r.text().await.unwrap());
        all.push('\n');
    }
    all
}

/// The step's attempts' stdout, from the history.
async fn outputs(app: &TestApp, id: &str, step: &str) -> Vec<String> {
    let (_, history) = app.get_json(&format!("/jobs/{id}/history")).await;
    let attempts = history["attempts"].as_array().expect("attempts").clone();
    attempts
        .iter()
        .filter(|a| a["step"] == step)
        .map(|a| a["stdout"].as_str().unwrap_or_default().to_string())
        .collect()
}

both_backends!(a_password_equal_to_the_username_does_not_break_the_confirmation);
async fn a_password_equal_to_the_username_does_not_break_the_confirmation(backend: Backend) {
    let app = TestApp::start_on(backend).await;
    let id = app
        .bootstrap(json!({"username": "secuser5", "password": "secuser5", "namespace": "team5"}))
        .await;
    let job = app.wait_final(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert!(app.sandbox.state().join("users/secuser5").exists());
    // The confirmation line names the user, i.e. the password: it is withheld, not masked, so
    // the output does not say which word of the message the password is.
    let created = outputs(&app, &id, "create_account").await;
    assert_eq!(created.len(), 1);
    assert!(created[0].contains(WITHHELD), "{created:?}");
    let shown = everything_shown(&app, &id).await;
    assert!(!shown.contains("has been created ********"), "{shown}");
    assert!(!shown.contains("'********'"), "{shown}");
    app.stop().await;
}

both_backends!(a_password_that_is_a_word_of_the_confirmation_neither_breaks_it_nor_shows);
async fn a_password_that_is_a_word_of_the_confirmation_neither_breaks_it_nor_shows(
    backend: Backend,
) {
    let app = TestApp::start_on(backend).await;
    let id = app
        .bootstrap(json!({"username": "bob", "password": "successfully", "namespace": "bob"}))
        .await;
    let job = app.wait_final(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let created = outputs(&app, &id, "create_account").await;
    assert!(created[0].contains(WITHHELD), "{created:?}");
    let shown = everything_shown(&app, &id).await;
    assert!(!shown.contains("successfully"), "{shown}");
    assert!(!shown.contains("has been created ********"), "{shown}");
    let sandbox = app.stop().await;
    assert!(
        !sandbox
            .database()
            .stored_text()
            .await
            .contains("successfully")
    );
}

both_backends!(a_password_printed_by_another_step_is_withheld_from_outputs_and_error_details);
async fn a_password_printed_by_another_step_is_withheld_from_outputs_and_error_details(
    backend: Backend,
) {
    let app = TestApp::start_on(backend).await;
    let password = "Echoed-Pass-4711";
    // `namespaces add` runs without the password, yet prints it in its failure.
    app.sandbox.ctl(
        "namespaces-add",
        "fail",
        &format!("1 1 cannot provision: got credentials {password} for this namespace"),
    );
    let id = app
        .bootstrap(json!({"username": "carol", "password": password, "namespace": "carol"}))
        .await;
    let job = app.wait_final(&id).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["step"], "add_namespace", "{job}");
    let detail = job["error"]["detail"].as_str().unwrap();
    assert!(detail.contains(WITHHELD), "{detail}");
    let shown = everything_shown(&app, &id).await;
    assert!(!shown.contains(password), "{shown}");
    assert!(!shown.contains("got credentials"), "{shown}");
    let history: Value = serde_json::from_str(
        &app.get(&format!("/jobs/{id}/history"))
            .await
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(history.to_string().contains(WITHHELD), "{history}");
    let sandbox = app.stop().await;
    assert!(!sandbox.database().stored_text().await.contains(password));
}
