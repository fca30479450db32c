//! This library against Auth's committed contract (`contracts/auth.openapi.json`): a
//! breaking change to the endpoints it calls, or to the fields it reads, fails here.

use serde_json::Value;

const CONTRACT: &str = include_str!("../../../contracts/auth.openapi.json");

fn contract() -> Value {
    serde_json::from_str(CONTRACT).unwrap()
}

/// Follows a local `$ref`.
fn resolve<'a>(spec: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let path = reference.strip_prefix("#/").unwrap();
            path.split('/').fold(spec, |node, key| &node[key])
        }
        None => schema,
    }
}

fn types(schema: &Value) -> Vec<&str> {
    match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    }
}

#[test]
fn the_introspection_request_we_send_matches_the_contract() {
    let spec = contract();
    let operation = &spec["paths"]["/api/v1/auth/introspect"]["post"];
    let schema = resolve(&spec, &operation["requestBody"]["content"]["application/json"]["schema"]);
    let sent = serde_json::to_value(auth_client::IntrospectionRequest { token: "t" }).unwrap();
    let properties = schema["properties"].as_object().unwrap();
    for (field, value) in sent.as_object().unwrap() {
        let declared = properties.get(field).unwrap_or_else(|| panic!("we send `{field}`, which the contract does not accept"));
        assert!(types(declared).contains(&"string") && value.is_string(), "{field}");
    }
    for required in schema["required"].as_array().unwrap() {
        assert!(sent.get(required.as_str().unwrap()).is_some(), "the contract requires `{required}`, which we do not send");
    }
}

/// We send HTTP Basic client credentials (`client_secret_basic`): the contract must ask
/// for exactly that on introspection.
#[test]
fn introspection_requires_the_basic_client_credentials_we_send() {
    let spec = contract();
    let operation = &spec["paths"]["/api/v1/auth/introspect"]["post"];
    let requirements = operation["security"].as_array().expect("introspection declares its security");
    assert_eq!(requirements.len(), 1, "one way to authenticate: {requirements:?}");
    let name = requirements[0].as_object().unwrap().keys().next().unwrap();
    let scheme = &spec["components"]["securitySchemes"][name];
    assert_eq!((scheme["type"].as_str(), scheme["scheme"].as_str()), (Some("http"), Some("basic")), "{scheme}");
    assert!(operation["responses"]["401"].is_object(), "a refusal of our credentials is documented");
}

#[test]
fn the_introspection_fields_we_read_exist_with_compatible_types() {
    let spec = contract();
    let operation = &spec["paths"]["/api/v1/auth/introspect"]["post"];
    let schema = resolve(&spec, &operation["responses"]["200"]["content"]["application/json"]["schema"]);
    let properties = &schema["properties"];
    // The fields IntrospectionResponse deserialises, and the JSON types it accepts.
    let expected = [("active", "boolean"), ("sub", "string"), ("sid", "string"), ("roles", "array"), ("age_class", "integer"), ("exp", "integer")];
    for (field, kind) in expected {
        assert!(types(&properties[field]).contains(&kind), "`{field}` is no longer a {kind} in the contract");
    }
    assert_eq!(properties["roles"]["items"]["type"], "string");
    assert_eq!(properties["sub"]["format"], "uuid");
    assert!(schema["required"].as_array().unwrap().iter().any(|r| r == "active"), "`active` must always be present");

    // An example shaped by the contract deserialises.
    let example = serde_json::json!({"active": true, "sub": "0196b1b2-7c1a-7000-8000-000000000001", "sid": "0196b1b2-7c1a-7000-8000-000000000002", "roles": ["user"], "age_class": 16, "exp": 1_900_000_000, "iss": "cinema-auth"});
    let parsed: auth_client::IntrospectionResponse = serde_json::from_value(example).unwrap();
    assert!(parsed.active && parsed.age_class == Some(Some(16)));
    // `null`: Auth knows no birth date; absent: an older Auth that does not say.
    let unknown: auth_client::IntrospectionResponse = serde_json::from_value(serde_json::json!({"active": true, "age_class": null})).unwrap();
    assert_eq!(unknown.age_class, Some(None));
    let silent: auth_client::IntrospectionResponse = serde_json::from_value(serde_json::json!({"active": true})).unwrap();
    assert_eq!(silent.age_class, None);
    assert!(types(&properties["age_class"]).contains(&"null"), "`age_class` must be nullable in the contract");
    let inactive: auth_client::IntrospectionResponse = serde_json::from_value(serde_json::json!({"active": false})).unwrap();
    assert!(!inactive.active && inactive.roles.is_none());
}

#[test]
fn the_jwks_endpoint_is_in_the_contract() {
    let spec = contract();
    let jwks = &spec["paths"]["/.well-known/jwks.json"]["get"]["responses"]["200"];
    assert!(jwks["content"]["application/json"].is_object(), "GET /.well-known/jwks.json must answer JSON");
}
