use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, error_fields, spawn_app, tokens};

/// Every admin route, with a body where it needs one.
fn admin_routes(role_id: &str, user_id: &str) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (Method::GET, "/api/v1/roles".into(), None),
        (Method::POST, "/api/v1/roles".into(), Some(json!({"name": "moderator", "permissions": ["comments.moderate"]}))),
        (Method::GET, format!("/api/v1/roles/{role_id}"), None),
        (Method::PATCH, format!("/api/v1/roles/{role_id}"), Some(json!({"description": "changed"}))),
        (Method::DELETE, format!("/api/v1/roles/{role_id}"), None),
        (Method::GET, format!("/api/v1/users/{user_id}/roles"), None),
        (Method::POST, format!("/api/v1/users/{user_id}/roles"), Some(json!({"role": "subscriber"}))),
        (Method::DELETE, format!("/api/v1/users/{user_id}/roles/subscriber"), None),
        (Method::POST, "/api/v1/users/search".into(), Some(json!({"email": "someone@example.com"}))),
    ]
}

async fn custom_role(app: &TestApp, admin: &str, name: &str) -> Value {
    let response =
        app.send(Method::POST, "/api/v1/roles", Some(admin), Some(json!({"name": name, "description": "d", "permissions": ["x.y"]}))).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let role: Value = response.json().await.unwrap();
    assert_eq!(location, format!("/api/v1/roles/{}", role["id"].as_str().unwrap()), "a 201 names what it made");
    role
}

#[tokio::test]
async fn every_admin_route_is_401_without_a_token_403_for_a_viewer_and_2xx_for_an_admin() {
    let app = spawn_app().await;
    let (_, viewer) = app.signed_in_user().await;
    let (admin_id, admin) = app.signed_in_with_role("admin").await;
    let role = custom_role(&app, &admin.access, "probe").await;
    let role_id = role["id"].as_str().unwrap();

    for (method, path, body) in admin_routes(role_id, &admin_id.to_string()) {
        let anonymous = app.send(method.clone(), &path, None, body.clone()).await;
        assert_eq!(anonymous.headers()["www-authenticate"], "Bearer", "{method} {path}");
        assert_problem(anonymous, StatusCode::UNAUTHORIZED, "unauthorized").await;
        let forbidden = app.send(method.clone(), &path, Some(&viewer.access), body.clone()).await;
        assert_problem(forbidden, StatusCode::FORBIDDEN, "forbidden").await;
    }
    // As admin every route succeeds (run in order: the delete comes after the reads).
    for (method, path, body) in admin_routes(role_id, &admin_id.to_string()) {
        let response = app.send(method.clone(), &path, Some(&admin.access), body).await;
        assert!(response.status().is_success(), "{method} {path}: {}", response.status());
    }
}

#[tokio::test]
async fn built_in_roles_exist_and_cannot_be_renamed_or_deleted() {
    let app = spawn_app().await;
    let (_, admin) = app.signed_in_with_role("admin").await;
    let roles: Vec<Value> = app.send(Method::GET, "/api/v1/roles", Some(&admin.access), None).await.json().await.unwrap();
    let names: Vec<&str> = roles.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["admin", "subscriber", "user"]);
    for role in &roles {
        assert_eq!(role["built_in"], true);
        let path = format!("/api/v1/roles/{}", role["id"].as_str().unwrap());
        let rename = app.send(Method::PATCH, &path, Some(&admin.access), Some(json!({"name": "renamed"}))).await;
        assert_problem(rename, StatusCode::CONFLICT, "built_in_role").await;
        let delete = app.send(Method::DELETE, &path, Some(&admin.access), None).await;
        assert_problem(delete, StatusCode::CONFLICT, "built_in_role").await;
        // Their description and permissions may change; keeping the same name is fine.
        let same_name = app.send(Method::PATCH, &path, Some(&admin.access), Some(json!({"name": role["name"], "description": "edited"}))).await;
        assert_eq!(same_name.status(), StatusCode::OK);
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM roles WHERE built_in").fetch_one(&app.db).await.unwrap();
    assert_eq!(count, 3);
}

#[tokio::test]
async fn roles_can_be_created_read_changed_and_deleted() {
    let app = spawn_app().await;
    let (_, admin) = app.signed_in_with_role("admin").await;
    let created = custom_role(&app, &admin.access, "moderator").await;
    assert_eq!(created["built_in"], false);
    let path = format!("/api/v1/roles/{}", created["id"].as_str().unwrap());

    let patched: Value = app
        .send(Method::PATCH, &path, Some(&admin.access), Some(json!({"name": "moderator2", "permissions": ["b.x", "a.y", "b.x"]})))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(patched["name"], "moderator2");
    assert_eq!(patched["permissions"], json!(["a.y", "b.x"]));
    assert_eq!(patched["description"], "d");
    let fetched: Value = app.send(Method::GET, &path, Some(&admin.access), None).await.json().await.unwrap();
    assert_eq!(fetched, patched);

    assert_eq!(app.send(Method::DELETE, &path, Some(&admin.access), None).await.status(), StatusCode::NO_CONTENT);
    assert_problem(app.send(Method::GET, &path, Some(&admin.access), None).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_problem(app.send(Method::DELETE, &path, Some(&admin.access), None).await, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn role_input_is_validated_and_names_are_unique() {
    let app = spawn_app().await;
    let (_, admin) = app.signed_in_with_role("admin").await;
    custom_role(&app, &admin.access, "editor").await;
    let duplicate = app.send(Method::POST, "/api/v1/roles", Some(&admin.access), Some(json!({"name": "editor"}))).await;
    assert_problem(duplicate, StatusCode::CONFLICT, "role_exists").await;
    for (body, field) in [
        (json!({"name": "Bad Name"}), "name"),
        (json!({"name": "okname", "permissions": ["Not A Permission"]}), "permissions[0]"),
        (json!({"name": "okname", "description": "x".repeat(501)}), "description"),
        (json!({"name": "okname", "permissions": "films.watch"}), "permissions"),
    ] {
        let response = app.send(Method::POST, "/api/v1/roles", Some(&admin.access), Some(body.clone())).await;
        let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(error_fields(&problem), [field], "{body}");
    }
    let bad_id = app.send(Method::GET, "/api/v1/roles/not-a-uuid", Some(&admin.access), None).await;
    assert_problem(bad_id, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
}

#[tokio::test]
async fn granting_twice_is_not_an_error_and_revoking_takes_the_role_away() {
    let app = spawn_app().await;
    let (_, admin) = app.signed_in_with_role("admin").await;
    let (_, viewer) = app.signed_in_user().await;
    let viewer_id = app.state.tokens.verify(&viewer.access).unwrap().sub;
    let path = format!("/api/v1/users/{viewer_id}/roles");
    for _ in 0..2 {
        let response = app.send(Method::POST, &path, Some(&admin.access), Some(json!({"role": "subscriber"}))).await;
        assert_eq!(response.status(), StatusCode::OK);
        let roles: Vec<Value> = response.json().await.unwrap();
        assert_eq!(roles.iter().map(|r| r["name"].as_str().unwrap()).collect::<Vec<_>>(), ["subscriber", "user"]);
    }
    let unknown_role = app.send(Method::POST, &path, Some(&admin.access), Some(json!({"role": "nope"}))).await;
    assert_problem(unknown_role, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let unknown_user = app
        .send(Method::POST, &format!("/api/v1/users/{}/roles", uuid::Uuid::new_v4()), Some(&admin.access), Some(json!({"role": "subscriber"})))
        .await;
    assert_problem(unknown_user, StatusCode::NOT_FOUND, "not_found").await;

    for _ in 0..2 {
        let response = app.send(Method::DELETE, &format!("{path}/subscriber"), Some(&admin.access), None).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
    }
    let roles: Vec<Value> = app.send(Method::GET, &path, Some(&admin.access), None).await.json().await.unwrap();
    assert_eq!(roles.len(), 1);
    assert_problem(app.send(Method::DELETE, &format!("{path}/nope"), Some(&admin.access), None).await, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn a_role_change_shows_in_introspection_at_once_and_in_the_token_after_refresh() {
    let app = spawn_app().await;
    let (_, admin) = app.signed_in_with_role("admin").await;
    let (_, viewer) = app.signed_in_user().await;
    let viewer_id = app.state.tokens.verify(&viewer.access).unwrap().sub;
    let grant = app.send(Method::POST, &format!("/api/v1/users/{viewer_id}/roles"), Some(&admin.access), Some(json!({"role": "subscriber"}))).await;
    assert_eq!(grant.status(), StatusCode::OK);

    assert_eq!(app.introspect(&viewer.access).await["roles"], json!(["subscriber", "user"]));
    assert_eq!(app.state.tokens.verify(&viewer.access).unwrap().roles, ["user"]);
    let refreshed = tokens(app.refresh(&viewer.refresh).await).await;
    assert_eq!(app.state.tokens.verify(&refreshed.access).unwrap().roles, ["subscriber", "user"]);
    let permissions: Value = app.get_with("/api/v1/users/me/permissions", &refreshed.access).await.json().await.unwrap();
    assert!(permissions["permissions"].as_array().unwrap().contains(&json!("films.watch.subscription")), "{permissions}");

    let revoke = app.send(Method::DELETE, &format!("/api/v1/users/{viewer_id}/roles/subscriber"), Some(&admin.access), None).await;
    assert_eq!(revoke.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.introspect(&refreshed.access).await["roles"], json!(["user"]));
}

#[tokio::test]
async fn an_admin_demoted_loses_admin_routes_at_once_even_with_an_old_token() {
    let app = spawn_app().await;
    let (admin_id, admin) = app.signed_in_with_role("admin").await;
    assert_eq!(app.send(Method::GET, "/api/v1/roles", Some(&admin.access), None).await.status(), StatusCode::OK);
    sqlx::query("DELETE FROM user_roles WHERE user_id = $1 AND role_id = (SELECT id FROM roles WHERE name = 'admin')")
        .bind(admin_id)
        .execute(&app.db)
        .await
        .unwrap();
    assert_problem(app.send(Method::GET, "/api/v1/roles", Some(&admin.access), None).await, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn my_permissions_are_the_union_of_my_roles() {
    let app = spawn_app().await;
    let (_, viewer) = app.signed_in_user().await;
    let body: Value = app.get_with("/api/v1/users/me/permissions", &viewer.access).await.json().await.unwrap();
    assert_eq!(body, json!({"roles": ["user"], "permissions": ["films.watch.free", "profile.manage"]}));
    let response = app.client.get(app.url("/api/v1/users/me/permissions")).send().await.unwrap();
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn admins_find_a_user_by_email() {
    let app = spawn_app().await;
    let (_, admin) = app.signed_in_with_role("admin").await;
    let (email, _) = app.signed_in_user().await;
    let search = |body: Value| app.send(Method::POST, "/api/v1/users/search", Some(&admin.access), Some(body));
    let found: Vec<Value> = search(json!({"email": email.to_uppercase()})).await.json().await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["email"], email.as_str());
    let none: Vec<Value> = search(json!({"email": "nobody@example.com"})).await.json().await.unwrap();
    assert!(none.is_empty());
    let missing = search(json!({})).await;
    assert_problem(missing, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let malformed = search(json!({"email": "not an address"})).await;
    let problem = assert_problem(malformed, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(error_fields(&problem), ["email"]);
    // PostgreSQL's text holds no NUL: looked up, it was a 500.
    let nul = search(json!({"email": "a\u{0}b@example.com"})).await;
    let problem = assert_problem(nul, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(error_fields(&problem), ["email"]);
    // A field the search does not know is refused, not ignored.
    let unknown = search(json!({"email": email, "is_admin": true})).await;
    assert_problem(unknown, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    // The address is no longer taken from the URL: the old lookup is gone.
    let old = app.send(Method::GET, &format!("/api/v1/users?email={email}"), Some(&admin.access), None).await;
    assert_eq!(old.status(), StatusCode::NOT_FOUND);
}

/// Every role goes into the access token, which both services accept up to 4,096
/// characters: a user holding as many roles as allowed, each with the longest name,
/// still gets a token that works, and one more grant is refused. (Without the cap, 61
/// such roles made a token of 4,801 characters that Auth issued and then refused.)
#[tokio::test]
async fn a_user_holds_at_most_32_roles_and_their_token_still_works() {
    use auth::store::users::MAX_ROLES_PER_USER;
    let app = spawn_app().await;
    let (_, admin) = app.signed_in_with_role("admin").await;
    let email = format!("many-roles-{}@example.com", uuid::Uuid::new_v4().simple());
    let id = app.signup(&email).await["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/users/{id}/roles");
    let grant = |role: String| app.send(Method::POST, &path, Some(&admin.access), Some(json!({"role": role})));
    // Signing up granted `user`: the rest up to the cap are custom roles of 50 characters.
    let name = |i: i64| format!("r{i:02}{}", "x".repeat(47));
    for i in 1..MAX_ROLES_PER_USER {
        custom_role(&app, &admin.access, &name(i)).await;
        assert_eq!(grant(name(i)).await.status(), StatusCode::OK, "grant {i}");
    }
    custom_role(&app, &admin.access, &name(MAX_ROLES_PER_USER)).await;
    let refused = grant(name(MAX_ROLES_PER_USER)).await;
    let problem = assert_problem(refused, StatusCode::CONFLICT, "too_many_roles").await;
    assert!(problem["detail"].as_str().unwrap().contains(&MAX_ROLES_PER_USER.to_string()), "{problem}");
    // Granting one already held is still fine at the cap, and a role that does not
    // exist is still that.
    assert_eq!(grant(name(1)).await.status(), StatusCode::OK);
    let unknown = grant("no-such-role".into()).await;
    assert_eq!(error_fields(&assert_problem(unknown, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await), ["role"]);

    let tokens = app.sign_in(&email).await;
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    let payload = URL_SAFE_NO_PAD.decode(tokens.access.split('.').nth(1).unwrap()).unwrap();
    let claims: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(claims["roles"].as_array().unwrap().len() as i64, MAX_ROLES_PER_USER);
    assert!(tokens.access.len() <= 4096, "{} characters", tokens.access.len());
    let me = app.send(Method::GET, "/api/v1/users/me/permissions", Some(&tokens.access), None).await;
    assert_eq!(me.status(), StatusCode::OK);
}

/// A grant racing the deletion of its role: the handler saw the role, the deletion
/// commits while the grant waits for it, and the grant's insert then finds no role.
/// That is a 422 naming the field, not a 500.
#[tokio::test]
async fn granting_a_role_deleted_meanwhile_is_422() {
    let app = spawn_app().await;
    let (_, admin) = app.signed_in_with_role("admin").await;
    let (viewer_id, _) = app.signed_in_with_role("user").await;
    let role = custom_role(&app, &admin.access, "vanishing").await;
    let mut deletion = app.db.begin().await.unwrap();
    sqlx::query("DELETE FROM roles WHERE name = 'vanishing'").execute(&mut *deletion).await.unwrap();
    let grant = {
        let (app, access) = (&app, admin.access.clone());
        async move { app.send(Method::POST, &format!("/api/v1/users/{viewer_id}/roles"), Some(&access), Some(json!({"role": "vanishing"}))).await }
    };
    let commit_when_the_grant_waits = async {
        crate::helpers::until_a_session_waits_for_a_lock(&app.db).await;
        deletion.commit().await.unwrap();
    };
    let (response, ()) = tokio::join!(grant, commit_when_the_grant_waits);
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(error_fields(&problem), ["role"], "{problem}");
    assert!(role["id"].is_string());
}

/// The other timing: the role's deletion commits after the grant checked the name but
/// before it wrote the grant (held here by a lock on `user_roles`). The grant used to
/// find no role to insert, insert nothing, and answer 200 as if the role were held.
#[tokio::test]
async fn granting_a_role_deleted_just_before_the_grant_is_written_is_422() {
    let app = spawn_app().await;
    let (_, admin) = app.signed_in_with_role("admin").await;
    let (viewer_id, _) = app.signed_in_with_role("user").await;
    custom_role(&app, &admin.access, "vanishing").await;
    let mut holder = app.db.begin().await.unwrap();
    sqlx::query("LOCK TABLE user_roles IN SHARE MODE").execute(&mut *holder).await.unwrap();
    let grant = {
        let (app, access) = (&app, admin.access.clone());
        async move { app.send(Method::POST, &format!("/api/v1/users/{viewer_id}/roles"), Some(&access), Some(json!({"role": "vanishing"}))).await }
    };
    let delete_the_role_when_the_grant_waits = async {
        crate::helpers::until_a_session_waits_for_a_lock(&app.db).await;
        sqlx::query("DELETE FROM roles WHERE name = 'vanishing'").execute(&mut *holder).await.unwrap();
        holder.commit().await.unwrap();
    };
    let (response, ()) = tokio::join!(grant, delete_the_role_when_the_grant_waits);
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(error_fields(&problem), ["role"], "{problem}");
}

/// Nothing the admin API accepts can leave nobody able to manage roles: the built-in
/// admin role keeps `roles.manage`, and its last holder keeps it.
#[tokio::test]
async fn the_last_admin_and_the_admin_roles_permission_to_manage_roles_stay() {
    let app = spawn_app().await;
    let (admin_id, admin) = app.signed_in_with_role("admin").await;
    let roles: Vec<Value> = app.send(Method::GET, "/api/v1/roles", Some(&admin.access), None).await.json().await.unwrap();
    let admin_role = roles.iter().find(|r| r["name"] == "admin").unwrap();
    let path = format!("/api/v1/roles/{}", admin_role["id"].as_str().unwrap());
    let stripped = app.send(Method::PATCH, &path, Some(&admin.access), Some(json!({"permissions": ["users.read"]}))).await;
    assert_problem(stripped, StatusCode::CONFLICT, "admin_role_needs_roles_manage").await;

    let own = format!("/api/v1/users/{admin_id}/roles/admin");
    assert_problem(app.send(Method::DELETE, &own, Some(&admin.access), None).await, StatusCode::CONFLICT, "last_admin").await;
    assert_eq!(app.send(Method::GET, "/api/v1/roles", Some(&admin.access), None).await.status(), StatusCode::OK);

    // With a second admin, the first may step down.
    let (other_id, _) = app.signed_in_with_role("user").await;
    let grant = app.send(Method::POST, &format!("/api/v1/users/{other_id}/roles"), Some(&admin.access), Some(json!({"role": "admin"}))).await;
    assert_eq!(grant.status(), StatusCode::OK);
    assert_eq!(app.send(Method::DELETE, &own, Some(&admin.access), None).await.status(), StatusCode::NO_CONTENT);
    let holders: i64 = sqlx::query_scalar("SELECT count(*) FROM user_roles ur JOIN roles r ON r.id = ur.role_id WHERE r.name = 'admin'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(holders, 1);
}
