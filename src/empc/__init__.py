"""empc: a framework for XMPP external components (XEP-0114) on Twisted."""
