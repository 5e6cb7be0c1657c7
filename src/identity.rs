//! Who is asking: Basic proxy credentials checked against the htpasswd
//! users, with a cache of successful verifications so bcrypt runs once per
//! credential, not once per request.
