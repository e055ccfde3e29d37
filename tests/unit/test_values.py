"""pha.values: one grammar per kind of value, and the secret-masking rule."""
import pytest

from pha import values

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("text,expected", [("0", 0), ("12", 12), (" 7 ", 7), ("-3", -3), ("+4", 4)])
def test_parse_int_accepts_ascii_integers(text, expected):
    assert values.parse_int(text) == expected


@pytest.mark.parametrize("text", ["", "1_0", "١٢", "²", "1.5", "0x10", "1e3", "12 3", "9" * 19])
def test_parse_int_refuses_everything_else(text):
    with pytest.raises(ValueError, match="integer"):
        values.parse_int(text)


@pytest.mark.parametrize("text,expected", [
    ("1048576", 1 << 20), ("16MB", 16 << 20), ("512kB", 512 << 10), ("1 GiB", 1 << 30),
    ("2tb", 2 << 40), ("10B", 10)])
def test_parse_size(text, expected):
    assert values.parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "MB", "16XB", "1.5MB", "²MB", "-1MB"])
def test_parse_size_refuses(text):
    with pytest.raises(ValueError, match="size"):
        values.parse_size(text)


@pytest.mark.parametrize("name,label,ok", [
    ("eth0", False, True), ("eth0:vip", False, False), ("eth0:vip", True, True),
    ("x" * 15, False, True), ("x" * 16, False, False), ("x" * 65536, True, False),
    ("eth 0", False, False), ("eth0\n", False, False), ("ét0", False, False), ("", False, False)])
def test_check_ifname(name, label, ok):
    if ok:
        assert values.check_ifname(name, label=label) == name
    else:
        with pytest.raises(ValueError):
            values.check_ifname(name, label=label)


@pytest.mark.parametrize("label,ok", [("lo", True), ("lo:vip", True), ("lo:" + "x" * 13, False), ("eth0", False)])
def test_check_lo_label(label, ok):
    if ok:
        assert values.check_lo_label(label) == label
    else:
        with pytest.raises(ValueError):
            values.check_lo_label(label)


@pytest.mark.parametrize("conninfo", [
    "host=a password=x", "host=a PASSWORD=x".lower(), "host=a password\t=x", "host=a password = 'x y'",
    "postgresql://u:secret@h/db", "postgresql://u@h/db?password=x", "postgresql://u@h/db?pass%77ord=x",
    "host=a sslpassword=x"])
def test_conninfo_secret_finds_every_form(conninfo):
    assert values.conninfo_secret(conninfo) in values.SECRET_KEYS
    with pytest.raises(ValueError, match="passfile"):
        values.check_no_secret(conninfo)


@pytest.mark.parametrize("conninfo", ["host=a user=b", "postgresql://u@h/db", "passfile=/x host=a", ""])
def test_conninfo_without_secret(conninfo):
    assert values.conninfo_secret(conninfo) is None
    assert values.check_no_secret(conninfo) == conninfo


def test_conninfo_errors_never_echo_the_text():
    with pytest.raises(ValueError) as err:
        values.conninfo_dict("host='unbalanced password=hunter2")
    assert "hunter2" not in str(err.value)


def test_conninfo_secret_refuses_newlines():
    with pytest.raises(ValueError, match="single line"):
        values.conninfo_secret("host=a\nuser=b")


@pytest.mark.parametrize("text", [
    "password=hunter2", "PassWord = hunter2", "password='hunter2 x'", "postgres://u:hunter2@h",
    "postgresql://u@h?password=hunter2&x=1", "sslpassword=hunter2"])
def test_mask_hides_the_secret(text):
    assert "hunter2" not in values.mask(text)


def test_shown_is_one_short_line():
    assert values.shown("a\nWARNING: forged") == "a\\nWARNING: forged"
    long = values.shown("x" * 5000)
    assert len(long) < 300 and "5000 characters" in long
    assert values.shown("top", secret=True) == "***"
    assert values.shown("host=a password=x") == "host=a password=***"
