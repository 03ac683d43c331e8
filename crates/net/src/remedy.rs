//! What a person can do about a failure, for the program that shows it to word in its
//! own terms: the command line names its flags, the portal asks the operator.

/// A remedy the user (or whoever runs mailmove for them) can apply. Errors say what
/// failed; this says which kind of fix applies, without naming how to apply it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Remedy {
    /// The server's certificate was issued by an authority this machine does not
    /// trust (or has expired, or names another host): trust the authority that signed
    /// it, or fix the server's certificate.
    TrustCertificate,
    /// The file of extra certificate authorities could not be read or holds none.
    ReadableCaFile,
    /// The password would travel unencrypted: connect with TLS, or accept the risk.
    EncryptOrAllowPlaintext,
    /// The server refused the login: check the login name and the password.
    CheckPassword,
    /// The server refused the access token and no fresh one could be had: the mailbox's
    /// user (or administrator) must sign in again.
    SignInAgain,
    /// The server offers no way to sign in that mailmove was given the means for
    /// (an OAuth token where it takes only passwords, or the reverse).
    OtherSignIn,
    /// The server's address is one connections may not go to (this machine, a private
    /// network): give the server's public address, or have that network allowed.
    PublicAddress,
}
