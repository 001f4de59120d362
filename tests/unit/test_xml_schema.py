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

"""The schema helper itself: if it accepted anything, every "validates"
in this tier would be vacuous."""

import testtools

from tests.unit import xml_schema

MINIMAL = ('<domain type="kvm"><name>x</name><memory>1024</memory>'
           '<os><type>hvm</type></os></domain>')


class AssertValidDomainTest(testtools.TestCase):
    def test_accepts_a_valid_domain(self):
        xml_schema.assert_valid_domain(self, MINIMAL)

    def test_reports_the_validators_message(self):
        bad = MINIMAL.replace('1024', 'lots')
        ex = self.assertRaises(self.failureException,
                               xml_schema.assert_valid_domain, self, bad)
        self.assertIn('libvirt schema rejects the domain', str(ex))
        self.assertIn("Type unsignedLong doesn't allow value 'lots'",
                      str(ex))

    def test_rejects_an_unknown_element(self):
        bad = MINIMAL.replace('</domain>', '<evil/></domain>')
        self.assertRaises(self.failureException,
                          xml_schema.assert_valid_domain, self, bad)


class DomainErrorsTest(testtools.TestCase):
    """The in-process check agrees with virt-xml-validate."""

    def test_accepts_a_valid_domain(self):
        self.assertIsNone(xml_schema.domain_errors(MINIMAL))

    def test_rejects_what_virt_xml_validate_rejects(self):
        for bad in (MINIMAL.replace('1024', 'lots'),
                    MINIMAL.replace('</domain>', '<evil/></domain>')):
            self.assertRaises(self.failureException,
                              xml_schema.assert_valid_domain, self, bad)
            self.assertIsNotNone(xml_schema.domain_errors(bad))
