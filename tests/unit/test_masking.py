"""The debug log's view of a stanza: passwords, secret form values and
message texts masked, everything else as it is."""

from __future__ import annotations

from lxml import etree

from empc.protocol import masked

C = "jabber:component:accept"


def parse(text: str) -> etree._Element:
    return etree.fromstring(text)


def test_a_registration_password_is_masked_and_the_username_shown() -> None:
    stanza = parse(
        f"<iq xmlns='{C}' type='set' id='r1'><query xmlns='jabber:iq:register'>"
        "<username>juliet</username><password>R0meo!</password></query></iq>"
    )
    text = masked(stanza)
    assert "R0meo!" not in text
    assert "<username>juliet</username>" in text
    assert "<password>********</password>" in text


def test_every_submitted_value_is_masked_but_the_form_type() -> None:
    stanza = parse(
        f"<iq xmlns='{C}' type='set' id='c1'><command xmlns='http://jabber.org/protocol/commands'>"
        "<x xmlns='jabber:x:data' type='submit'>"
        "<field var='FORM_TYPE'><value>urn:example:signup</value></field>"
        "<field var='passphrase'><value>hunter2</value></field>"
        "<field var='nick'><value>romeo</value></field></x></command></iq>"
    )
    text = masked(stanza)
    assert "hunter2" not in text and "romeo" not in text
    assert "<value>urn:example:signup</value>" in text


def test_a_form_shown_to_a_user_masks_only_its_text_private_values() -> None:
    stanza = parse(
        f"<iq xmlns='{C}' type='result' id='c1'><x xmlns='jabber:x:data' type='form'>"
        "<field var='pin' type='text-private'><value>4711</value></field>"
        "<field var='nick' type='text-single'><value>romeo</value></field></x></iq>"
    )
    text = masked(stanza)
    assert "4711" not in text
    assert "<value>romeo</value>" in text


def test_message_texts_show_only_their_length() -> None:
    stanza = parse(
        f"<message xmlns='{C}' type='chat' to='bot@example.org'><subject>Hi</subject>"
        "<body>my password is hunter2</body><thread>t-1</thread></message>"
    )
    text = masked(stanza)
    assert "hunter2" not in text and ">Hi<" not in text and "t-1" not in text
    assert "<body>[22 characters]</body>" in text
    assert 'to="bot@example.org"' in text


def test_texts_deeper_in_the_stanza_are_masked_too() -> None:
    stanza = parse(
        f"<message xmlns='{C}' to='bot@example.org'>"
        "<html xmlns='http://jabber.org/protocol/xhtml-im'>"
        "<body xmlns='http://www.w3.org/1999/xhtml'><p>my <b>pin</b> is 4711</p></body></html>"
        "<forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client'>"
        "<body>forwarded secret</body></message></forwarded></message>"
    )
    text = masked(stanza)
    assert "4711" not in text and "forwarded secret" not in text
    assert "[14 characters]" in text and "[16 characters]" in text


def test_a_presence_status_shows_only_its_length() -> None:
    stanza = parse(f"<presence xmlns='{C}'><status>at the dentist</status></presence>")
    assert "<status>[14 characters]</status>" in masked(stanza)


def test_an_iq_without_secrets_is_shown_whole() -> None:
    stanza = parse(
        f"<iq xmlns='{C}' type='get' id='p1' to='echo.example.org'>"
        "<query xmlns='urn:example:weather' city='Oslo'>rain</query></iq>"
    )
    assert masked(stanza) == etree.tostring(stanza, encoding="unicode")


def test_masking_leaves_the_stanza_itself_as_it_was() -> None:
    stanza = parse(f"<message xmlns='{C}'><body>secret plans</body></message>")
    before = etree.tostring(stanza)
    masked(stanza)
    assert etree.tostring(stanza) == before
