# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""Parsing the XML the driver and its commands read: libvirt's answers and
the files an operator gives ``nova-kvmx``.

lxml's default parser depends on the installed version: before lxml 5.2
it resolves external entities (``<!ENTITY x SYSTEM "file:///...">`` reads
a file into the document). This parser resolves no entity, loads no DTD,
reaches no network and keeps libxml2's limits on the document's size
(``huge_tree`` off), whatever lxml is installed. libvirt never writes a
document type declaration, so a document that has one is refused with an
error saying so, rather than parsed with its entities left empty.
"""

from lxml import etree


class DoctypeRefused(etree.XMLSyntaxError):
    """A document with a ``<!DOCTYPE>``, whose entities could read files
    or expand without bound."""


def _parser():
    # A parser per document: lxml parsers are not thread-safe.
    return etree.XMLParser(resolve_entities=False, no_network=True,
                           load_dtd=False, huge_tree=False)


def fromstring(text):
    """The root element of ``text`` (str or bytes).

    :raises: etree.XMLSyntaxError when it is not well-formed XML,
        DoctypeRefused (a subclass) when it has a document type declaration
    """
    if isinstance(text, str):
        text = text.encode()
    root = etree.fromstring(text, parser=_parser())
    doctype = root.getroottree().docinfo.doctype
    if doctype:
        line = text[:max(0, text.find(b'<!DOCTYPE'))].count(b'\n') + 1
        raise DoctypeRefused(
            'a document type declaration (<!DOCTYPE>) is not accepted: '
            'libvirt\'s XML has none, and its entities could read files or '
            'expand without bound', 0, line, 1)
    return root
