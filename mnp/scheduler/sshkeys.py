"""The per-attempt SSH key pair of a multi-node parallel job (the head makes one per attempt;
the text built around it is :mod:`mnp.build.ssh`'s)."""

from __future__ import annotations


def generate_job_key(comment: str = "mnp-job") -> tuple[str, str]:
    """A fresh ed25519 key pair: (private key in OpenSSH format, public key line).

    The private key is unencrypted PEM-like text (``-----BEGIN OPENSSH PRIVATE KEY-----``)
    that ``ssh -i`` reads; the public line is ``ssh-ed25519 AAAA… <comment>``.
    """
    # asyncssh takes ~0.5 s to import; only key generation needs it.
    import asyncssh

    key = asyncssh.generate_private_key("ssh-ed25519", comment=comment)
    private = key.export_private_key("openssh").decode("ascii")
    public = key.export_public_key("openssh").decode("ascii").strip()
    return private, public
