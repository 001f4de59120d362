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

"""Helpers to check domain XML: libvirt's schema, then element by element.

libvirt ships the RelaxNG schema it accepts and ``virt-xml-validate``
(package libvirt-clients) to apply it, so a domain that passes here is one
libvirt would parse; what the elements *mean* is then asserted on the parsed
tree, never by comparing whole strings.
"""

import functools
import os
import tempfile

from lxml import etree
from oslo_concurrency import processutils

NOVA_NS = 'http://openstack.org/xmlns/libvirt/nova/1.1'
# The schema virt-xml-validate applies to a domain (it runs xmllint, i.e.
# libxml2's RelaxNG, on this file).
DOMAIN_RNG = '/usr/share/libvirt/schemas/domain.rng'
NS = {'nova': NOVA_NS}


def assert_valid_domain(testcase, xml):
    """Fail ``testcase`` with the validator's message unless ``xml`` (str)
    is a domain libvirt's schema accepts."""
    fd, path = tempfile.mkstemp(prefix='kvmx-domain-', suffix='.xml')
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as f:
            f.write(xml)
        try:
            processutils.execute('virt-xml-validate', path, 'domain')
            error = None
        except processutils.ProcessExecutionError as ex:
            error = (ex.stdout + ex.stderr).strip()
    finally:
        os.unlink(path)
    if error is not None:
        testcase.fail('libvirt schema rejects the domain:\n%s\n%s' % (
            error, xml))


@functools.lru_cache(maxsize=None)
def _domain_schema():
    return etree.RelaxNG(file=DOMAIN_RNG)


def domain_errors(xml):
    """What libvirt's domain schema finds wrong with ``xml`` (str), None if
    nothing: the check of :func:`assert_valid_domain`, in process (the same
    schema file and libxml2 validator, without a process per domain) for
    tests that validate hundreds of domains."""
    schema = _domain_schema()
    if schema.validate(parse(xml)):
        return None
    return str(schema.error_log)


def parse(xml):
    """The root element of ``xml`` (str), for element-by-element checks."""
    return etree.fromstring(xml.encode('utf-8'))


def find(root, path):
    """The single element at ``path`` (an XPath with the ``nova`` prefix
    available); raises AssertionError when there is not exactly one."""
    found = root.xpath(path, namespaces=NS)
    if len(found) != 1:
        raise AssertionError('%d elements at %s, expected 1' % (
            len(found), path))
    return found[0]


def findall(root, path):
    return root.xpath(path, namespaces=NS)
