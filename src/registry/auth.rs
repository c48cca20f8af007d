//! Registry auth: `/v2/` challenges, bearer tokens, basic auth.
