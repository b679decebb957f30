"""A study's trust material: CA, SuperLink certificate, enrolled site keys."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from server.study import (
    Study,
    StudyError,
    add_site,
    enrolled_roles,
    enrolled_sites,
    generate_site_keys,
    import_tls,
    init_study,
    issue_server_cert,
    remove_site,
    set_role,
)
from server.study_cli import main as study_main


def test_init_makes_a_ca_and_a_server_certificate_for_the_given_hosts(tmp_path: Path) -> None:
    study = init_study(tmp_path / "s", ["coord.example.org", "10.0.0.5", "localhost"])
    ca = x509.load_pem_x509_certificate(study.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(study.server_cert.read_bytes())
    server.verify_directly_issued_by(ca)  # raises if not signed by the study CA
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["coord.example.org", "localhost"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for secret in (study.ca_key, study.server_key):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(study.ca_key.parent.stat().st_mode) == 0o700
    with pytest.raises(StudyError, match="already exists"):
        init_study(study.root, ["x"])


def test_reissued_server_certificate_is_signed_by_the_same_ca(tmp_path: Path) -> None:
    study = init_study(tmp_path / "s", ["old.example.org"])
    issue_server_cert(study, ["new.example.org"])
    server = x509.load_pem_x509_certificate(study.server_cert.read_bytes())
    server.verify_directly_issued_by(x509.load_pem_x509_certificate(study.ca_cert.read_bytes()))
    assert server.subject.rfc4514_string() == "CN=new.example.org"


def test_add_site_issues_an_openssh_ec_key_pair_flower_can_load(tmp_path: Path) -> None:
    study = init_study(tmp_path / "s", ["localhost"])
    outbox = add_site(study, "hospital_a", "train")
    private = serialization.load_ssh_private_key((outbox / "hospital_a.key").read_bytes(), None)
    assert isinstance(private, ec.EllipticCurvePrivateKey) and private.curve.name == "secp384r1"
    assert stat.S_IMODE((outbox / "hospital_a.key").stat().st_mode) == 0o600
    assert (outbox / "ca.crt").read_bytes() == study.ca_cert.read_bytes()
    public = private.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    assert enrolled_sites(study) == {"hospital_a": public}


def test_add_site_takes_a_hospitals_own_public_key_and_refuses_bad_ones(tmp_path: Path) -> None:
    study = init_study(tmp_path / "s", ["localhost"])
    public = generate_site_keys(tmp_path / "own.key")
    outbox = add_site(study, "hospital_b", "train", public)
    assert not (outbox / "hospital_b.key").exists()  # the private key stayed with the hospital
    with pytest.raises(StudyError, match="already enrolled as site 'hospital_b'"):
        add_site(study, "hospital_c", "train", public)
    with pytest.raises(StudyError, match="already enrolled"):
        add_site(study, "hospital_b", "train")
    with pytest.raises(StudyError, match="site name"):
        add_site(study, "../evil", "train")
    rsa_key = tmp_path / "rsa.pub"
    rsa_key.write_bytes(
        rsa.generate_private_key(65537, 2048).public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    )
    with pytest.raises(StudyError, match="EC key on a NIST curve"):
        add_site(study, "hospital_d", "train", rsa_key)
    garbage = tmp_path / "garbage.pub"
    garbage.write_text("not a key")
    with pytest.raises(StudyError, match="garbage.pub: not an OpenSSH public key"):
        add_site(study, "hospital_e", "train", garbage)


def test_each_site_is_enrolled_with_its_role_and_a_site_without_one_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study = init_study(tmp_path / "s", ["localhost"])
    add_site(study, "hospital_a", "train")
    add_site(study, "hospital_ext", "external")
    assert enrolled_roles(study) == {"hospital_a": "train", "hospital_ext": "external"}
    with pytest.raises(StudyError, match="role 'trainer'"):
        add_site(study, "hospital_b", "trainer")
    assert "hospital_b" not in enrolled_sites(study)
    assert study_main(["--study", str(study.root), "set-role", "hospital_ext", "--role", "train"]) == 0
    assert enrolled_roles(study)["hospital_ext"] == "train"
    with pytest.raises(StudyError, match="not enrolled"):
        set_role(study, "hospital_z", "train")
    (study.enrolled_dir / "hospital_a.role").unlink()  # a study enrolled before roles were recorded
    with pytest.raises(StudyError, match="hospital_a.role: missing.*set-role hospital_a"):
        enrolled_roles(study)
    assert study_main(["--study", str(study.root), "list"]) == 2
    assert "set-role hospital_a" in capsys.readouterr().err


def test_remove_site_withdraws_the_key(tmp_path: Path) -> None:
    study = init_study(tmp_path / "s", ["localhost"])
    add_site(study, "hospital_a", "train")
    remove_site(study, "hospital_a")
    assert enrolled_sites(study) == {} and not (study.enrolled_dir / "hospital_a.role").exists()
    with pytest.raises(StudyError, match="not enrolled"):
        remove_site(study, "hospital_a")


def test_cli_prints_what_to_send_and_the_hospitals_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert study_main(["--study", str(tmp_path / "s"), "init", "--host", "coord.example.org"]) == 0
    assert study_main(["--study", str(tmp_path / "s"), "add-site", "hospital_a", "--role", "train", "--superlink", "coord.example.org:9092"]) == 0
    out = capsys.readouterr().out
    assert "outbox/hospital_a/" in out and "--superlink coord.example.org:9092" in out and "--auth-key hospital_a.key" in out
    assert study_main(["--study", str(tmp_path / "missing"), "add-site", "x", "--role", "train"]) == 2
    assert "axilla-study init" in capsys.readouterr().err
    sans = x509.load_pem_x509_certificate(Study(tmp_path / "s").server_cert.read_bytes()).extensions
    assert "localhost" in sans.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)


def test_existing_tls_material_is_taken_after_checking_it_belongs_together(tmp_path: Path) -> None:
    source = init_study(tmp_path / "institution", ["coord.example.org", "127.0.0.1"])
    other = init_study(tmp_path / "other", ["x"])
    study = import_tls(tmp_path / "s", source.ca_cert, source.server_cert, source.server_key)
    assert study.server_cert.read_bytes() == source.server_cert.read_bytes() and not study.ca_key.exists()
    assert stat.S_IMODE(study.server_key.stat().st_mode) == 0o600
    add_site(study, "hospital_a", "train")  # enrolment needs no CA key
    with pytest.raises(StudyError, match="not issued by"):
        import_tls(tmp_path / "s2", other.ca_cert, source.server_cert, source.server_key)
    with pytest.raises(StudyError, match="does not belong to"):
        import_tls(tmp_path / "s3", source.ca_cert, source.server_cert, other.server_key)
    with pytest.raises(StudyError, match="imported TLS material"):
        issue_server_cert(study, ["y"])
