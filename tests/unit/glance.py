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

"""Nova's fake Glance, checking image signatures as Nova's Glance client
does before a download."""

from nova.image import glance
from nova.tests import fixtures as nova_fixtures


class VerifyingGlanceFixture(nova_fixtures.GlanceFixture):
    """Nova's fake Glance hands out the data without the check Nova's
    Glance client makes first: with trusted certificates (or ``[glance]
    verify_glance_signatures``) the image must be signed by one of them.
    Nova's own check runs here, against the fake's image properties."""

    def download(self, context, image_id, data=None, dst_path=None,
                 trusted_certs=None):
        glance.GlanceImageServiceV2._get_verifier(self, context, image_id,
                                                  trusted_certs)
        return super().download(context, image_id, data=data,
                                dst_path=dst_path,
                                trusted_certs=trusted_certs)
