//! What portal users are told to do about a failed connection. They cannot pass
//! command-line flags or install a certificate authority: those are the operator's, so
//! the advice sends them to the operator or to a page of the portal.

use mailmove_net::Remedy;

/// The portal's words for a remedy, added after the error's own sentence wherever a
/// pass's failure is shown. The worker adds them when it stores the reason (it is
/// given this function by whoever starts it).
pub fn advice(remedy: Remedy) -> Option<&'static str> {
    Some(match remedy {
        Remedy::TrustCertificate => {
            "ask the operator of this portal to trust the certificate authority that signed \
             this server's certificate, or the server's administrator to install a valid one"
        }
        Remedy::ReadableCaFile => {
            "ask the operator of this portal to fix the file of trusted certificate \
             authorities it was started with"
        }
        Remedy::EncryptOrAllowPlaintext => {
            "choose TLS or STARTTLS for this server if it offers them, or ask the operator of \
             this portal to allow unencrypted logins"
        }
        Remedy::CheckPassword => "type the right password under Change passwords",
        Remedy::SignInAgain => "sign in again for this mailbox",
        Remedy::OtherSignIn => {
            "choose the way this server signs in (password or the provider's sign-in) for this side"
        }
        Remedy::PublicAddress => {
            "give the server's public name or address, or ask the operator of this portal to \
             allow the network it is on"
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVERY_REMEDY: [Remedy; 7] = [
        Remedy::TrustCertificate,
        Remedy::ReadableCaFile,
        Remedy::EncryptOrAllowPlaintext,
        Remedy::CheckPassword,
        Remedy::SignInAgain,
        Remedy::OtherSignIn,
        Remedy::PublicAddress,
    ];

    #[test]
    fn the_advice_names_no_command_line_flag() {
        for remedy in EVERY_REMEDY {
            let words = advice(remedy).unwrap_or_default();
            assert!(!words.contains("--"), "{remedy:?}: {words}");
            assert!(!words.contains("tls-ca"), "{remedy:?}: {words}");
        }
    }

    #[test]
    fn an_untrusted_certificate_is_the_operators_to_trust() {
        let words = advice(Remedy::TrustCertificate).unwrap();
        assert!(words.contains("ask the operator"), "{words}");
        assert!(words.contains("certificate authority"), "{words}");
    }
}
