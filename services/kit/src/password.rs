//! Console passwords: argon2id hashes in PHC string form
//! (`$argon2id$v=19$m=19456,t=2,p=1$...`). `talonctl hash-password` makes
//! them; notify checks logins against them.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("not an argon2 password hash (make one with `talonctl hash-password`): {0}")]
    NotAHash(String),
    #[error("cannot hash the password: {0}")]
    Hashing(String),
}

/// A hash of `password` with a fresh random salt and argon2id's default
/// parameters.
pub fn hash(password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hashing(e.to_string()))
}

/// Checks that `hash` is a PHC string of an argon2 hash.
pub fn check_hash(hash: &str) -> Result<(), PasswordError> {
    let parsed =
        PasswordHash::new(hash.trim()).map_err(|e| PasswordError::NotAHash(e.to_string()))?;
    if !parsed.algorithm.as_str().starts_with("argon2") {
        return Err(PasswordError::NotAHash(format!(
            "the algorithm is {}",
            parsed.algorithm
        )));
    }
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err(PasswordError::NotAHash("no salt or no hash".into()));
    }
    Ok(())
}

/// Does `password` match `hash`? A hash that does not parse matches nothing.
/// Slow on purpose (argon2): call it off the async threads.
pub fn verify(hash: &str, password: &str) -> bool {
    match PasswordHash::new(hash.trim()) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let h = hash("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        check_hash(&h).unwrap();
        assert!(verify(&h, "correct horse"));
        assert!(!verify(&h, "correct horsE"));
        assert!(!verify(&h, ""));
        // Salted: the same password hashes differently each time.
        assert_ne!(h, hash("correct horse").unwrap());
    }

    #[test]
    fn what_is_not_an_argon2_hash_is_refused() {
        for bad in [
            "",
            "hunter2",
            "$2b$12$abcdefghijklmnopqrstuv",
            "$argon2id$v=19$garbage",
        ] {
            assert!(check_hash(bad).is_err(), "{bad:?}");
            assert!(!verify(bad, "hunter2"), "{bad:?}");
        }
    }
}
