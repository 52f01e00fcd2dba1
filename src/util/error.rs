//! Errors as one line of text: an error and its causes, each said once.

/// An error and its sources on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

/// [`error_chain`] for any error value.
pub fn error_chain_of<E: std::error::Error>(e: &E) -> String {
    error_chain(e)
}
