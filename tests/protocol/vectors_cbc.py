"""CBC + HMAC data packets captured from the stock openvpn 2.6.14 (issue 11).

Two stock peers in network namespaces, `data-ciphers <cipher>` and `auth <digest>`, verb 9: the
keys are the client's "Master Encrypt/Decrypt (cipher|hmac, ...)" log lines, each datagram was
read off the server's veth with an AF_PACKET socket, its IV and the first plaintext bytes
(packet-id, then the IP header) are the sender's "ENCRYPT IV"/"ENCRYPT FROM" lines. The packets
are pings through the tunnel (pid 2: an ICMP echo request client->server, pid 1: the server's
echo reply).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CbcVector:
    cipher: str
    auth: str
    c2s_cipher_key: bytes  # the client's "Master Encrypt (cipher)"
    c2s_hmac_key: bytes
    s2c_cipher_key: bytes  # the client's "Master Decrypt (cipher)"
    s2c_hmac_key: bytes
    to_server: bytes  # P_DATA_V2 datagram, client->server
    to_server_iv: bytes
    to_server_plain_prefix: bytes  # "ENCRYPT FROM" without its packet-id: the IP header start
    to_server_pid: int
    to_client: bytes
    to_client_iv: bytes
    to_client_plain_prefix: bytes
    to_client_pid: int


def _h(text: str) -> bytes:
    return bytes.fromhex(text)


AES256_SHA256 = CbcVector(
    cipher="AES-256-CBC",
    auth="SHA256",
    c2s_cipher_key=_h("c97fcc0e3f2cc47a8128f9baa29376d1ee4ee5e09e5374ff81ded637d8f091cb"),
    c2s_hmac_key=_h("a4d3699ed6aeb18f11b56e8c9cc16592f160058d1c8f91dce9f10225b7cefbed"),
    s2c_cipher_key=_h("02eaab877df6b6a04e1165229b57478632d302a84bf031e14b2e023fb7ba321d"),
    s2c_hmac_key=_h("096c0e6d3480145dd64d7ecbc496690fd0edfacf2870e9610f17cd17f74bcdd4"),
    to_server=_h(
        "48000000e8697bbccc47a67269b596e7a1b44766ced77b392fbf5ce837ce3e3ab10a2c5a2f624eb475db7fab"
        "cd9dd5a235fca87ce57c7460f901aceda65761178150c641894bc4dd61027e4bd74da9cc30054fff2c6ce114"
        "578b2c456a280d22602b58ede082d3a9423cef6a0e616b1da341aadc0ea6006e65b3e3767f8a451c11122858"
        "c0aa73072d6b14bbdcb4e3bc41229f6d"
    ),
    to_server_iv=_h("2f624eb475db7fabcd9dd5a235fca87c"),
    to_server_plain_prefix=_h("450000547e244000400135d60a5639020a5639010800d5564dae00"),
    to_server_pid=2,
    to_client=_h(
        "48000000783a1e4519f0995a5aa6aebe271cf09019041f6bbb50e3ac52c0638327174aae78f3d5a75617adcf"
        "0ab30e594c90cbf4e66279a576d4f8b7127be210c1b5f4b8de50b45145583021d0bd3a6dba92deaadb5b1629"
        "44085b17bf47537deb2f15493b056a1c5d9935efada008f979a49af7d45a7bcc0f711ad74667060521384a0f"
        "fecf2621fe92a2359463ae8ca137b9a5"
    ),
    to_client_iv=_h("78f3d5a75617adcf0ab30e594c90cbf4"),
    to_client_plain_prefix=_h("45000054519600004001a2640a5639010a5639020000dd564dae00"),
    to_client_pid=1,
)

AES128_SHA1 = CbcVector(
    cipher="AES-128-CBC",
    auth="SHA1",
    c2s_cipher_key=_h("ce408b6b8660b83e1e6c4d7887f8b287"),
    c2s_hmac_key=_h("1419387e25be2d36e2b62ec7fbda1fc633aa66c3"),
    s2c_cipher_key=_h("76ad3883c306cce3760163c0a0cf0e97"),
    s2c_hmac_key=_h("80352d089b215d56f9b7eab9c4cc299b70d2cb4a"),
    to_server=_h(
        "4800000007c23508490d16319c550474e253180628878d5ce9ffaa68d274d1b67f54b54453644f84a7ba8fd0"
        "7ce1b04663c9b6fce043d32ab0347244cfa3b38b0396d859f6ad42ffc81a74cc626b8bb0d59d81d03209295a"
        "afb9b36be6284f6823210cdb403662210f912bbf90310ec614f840007bdcc566fe9c923f318ad4b30666eefc"
        "1c821f12"
    ),
    to_server_iv=_h("e9ffaa68d274d1b67f54b54453644f84"),
    to_server_plain_prefix=_h("45000054cea24000400165f80a05f9020a05f9010800f6984efb00"),
    to_server_pid=2,
    to_client=_h(
        "48000000003f11589e8cfe0aed3d281dff1004f2a0909f32965094ffeda64d5afa9b458024a5e273dd38c14b"
        "cf39d1e08f799aa0f7fbebd8b8519cbfe2c02457fe1eed8bef32178a19b905d54fad87a467ef88bcec837d1b"
        "ebe7c8ebbf1036f016691093d7daa2a0fb2eacf6c13d70cac20e1ebc34928cce93743419fa9c4ae2a978ea7d"
        "be37c0ab"
    ),
    to_client_iv=_h("965094ffeda64d5afa9b458024a5e273"),
    to_client_plain_prefix=_h("45000054138f00004001610c0a05f9010a05f9020000fe984efb00"),
    to_client_pid=1,
)

AES256_SHA512 = CbcVector(
    cipher="AES-256-CBC",
    auth="SHA512",
    c2s_cipher_key=_h("6ae14a6eefa112892508c76aed0e170e45aae763cd96d56ce31ddd3e5e507057"),
    c2s_hmac_key=_h("6838087d3c02e520589bec5caf250ca783c119f9af0c08267319e84b26dca427dfeede6c76af6c1d5dcc35cb25aae0c351ee49c55d433ed611124bbc22d921d8"),
    s2c_cipher_key=_h("29affb35d4b07075d43bbd648be5e3ec7f511a5d2259eca59faba050271a6e13"),
    s2c_hmac_key=_h("ec50122e3dff26293c660873854b6a4bb2a7ecbbff8bcf52f7e47a0dce6d9b14705d731203f667d25103fbdb20116bbba3d3c9500c5191da6f832e68421a43a9"),
    to_server=_h(
        "48000000f426b2a346f8aef58891cba9564f6b8a19003422b78f00d174df01fc32cfcc6d6eecbb3ab45ac963"
        "a95540c8cb6c777473a25a2b8de85aebecfbce23bf495b222ee910871d2e42625ce21105091f4fd4c086cc5e"
        "769e60368ca38fe0ba3aca7419e42dd32fc7b3c279119cec4382036153abd4f84e571703562c4744e1135096"
        "eb90227737f592400cf9431faa0acf7d3a8ee3464947dd2e9953929ed9ee7d5c216df1c3e1ffad3789c23710"
        "1d856cd7"
    ),
    to_server_iv=_h("2ee910871d2e42625ce21105091f4fd4"),
    to_server_plain_prefix=_h("45000054ee81400040012c4e0aeb85020aeb8501080088fb4f2700"),
    to_server_pid=2,
    to_client=_h(
        "480000008caa598ab8d52d748d9c6f9bdda586f54c47d40c1c9b0e5c8cc144f074538c1953205e270e360729"
        "e1495eabb1d152e79a2e2a1b787e1c4fbfbdb42ecdbf9f7c5d2341178ebefe9c2273f42449feeed18c7e272e"
        "12c1e2ee4fa11c72ed00d600e6d17a74538479810724c6a44286a5fd1eeecc22ec0f72f992d35a8d0ac80676"
        "7495b3a1332d5530aae8b6dda12baf2bc107753b1d79d6f4a601a937c5e44ab8b2934cb16154e394b26e2356"
        "38a5c234"
    ),
    to_client_iv=_h("5d2341178ebefe9c2273f42449feeed1"),
    to_client_plain_prefix=_h("450000544b27000040010fa90aeb85010aeb8502000090fb4f2700"),
    to_client_pid=1,
)

ALL = (AES256_SHA256, AES128_SHA1, AES256_SHA512)
