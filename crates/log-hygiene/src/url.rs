//! URLs as they are shown.

/// `url` with any `user:password@` after its scheme replaced by `…@`, for logs, spans
/// and error texts. Plain text, not a URL parser: a URL that does not parse (and is
/// quoted in the error saying so) loses its password too. Read as the WHATWG URL
/// parser reads special URLs: any run of `/` and `\` may follow the scheme's colon
/// (`http:u:p@h` has credentials too), and `\` ends the authority as `/` does.
pub fn without_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once(':') else { return url.to_owned() };
    if scheme.is_empty() || !scheme.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')) {
        return url.to_owned();
    }
    let authority = rest.trim_start_matches(['/', '\\']);
    let slashes = &rest[..rest.len() - authority.len()];
    let authority_end = authority.find(['/', '\\', '?', '#']).unwrap_or(authority.len());
    match authority[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}:{slashes}…{}", &authority[at..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_name_and_password_are_hidden_and_nothing_else_changes() {
        assert_eq!(without_userinfo("http://u:p@h:1/a@b"), "http://…@h:1/a@b");
        assert_eq!(without_userinfo("http://h:1/a@b"), "http://h:1/a@b");
        assert_eq!(without_userinfo("http://h:1?next=a@b"), "http://h:1?next=a@b");
        assert_eq!(without_userinfo("not a url"), "not a url");
        for with in ["http://admin:s3cret@auth:8000", "http://admin@auth:8000", "http://:s3cret@auth:8000"] {
            assert_eq!(without_userinfo(&format!("{with}/api/v1/auth/introspect")), "http://…@auth:8000/api/v1/auth/introspect");
        }
        // A password with an `@` in it, and a URL the URL parser refuses (a space).
        assert_eq!(without_userinfo("redis://u:p@ss@redis:6379/0"), "redis://…@redis:6379/0");
        assert_eq!(without_userinfo("http://user:tok3n@ex ample:4318/v1/traces"), "http://…@ex ample:4318/v1/traces");
        // Forms the URL parser reads credentials from too.
        assert_eq!(without_userinfo("http:u:p@h/x"), "http:…@h/x");
        assert_eq!(without_userinfo("http:/u:p@h"), "http:/…@h");
        assert_eq!(without_userinfo("http:\\\\u:p@h\\x@y"), "http:\\\\…@h\\x@y");
        assert_eq!(without_userinfo("http:///u:p@h"), "http:///…@h");
        // Not a scheme: left as it is.
        assert_eq!(without_userinfo("a b:u@h"), "a b:u@h");
    }
}
