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

"""What a failed or deleted guest may leave behind, looked for where an
operator would look: libvirt's domains, the instances directory and the
image cache, the host's network devices, Placement, and the CPUs pinned in
the compute node's NUMA topology. Fault scenarios record themselves for
benchmarks/reliability_report.py.
"""

import os
import re

from nova import objects

from tests import reliability_log

# What the image cache holds when nothing was interrupted: a base image
# per image id (sha1) and formatted blank disks per size ('ext4_1024').
CACHE_ENTRY = re.compile(r'[0-9a-f]{40}|[a-z0-9]+_[0-9]+')


class LeftoversMixin(object):
    """For RealLibvirtTestCase tests."""

    def scenario(self, name, kind='fault'):
        """Record this test as a scenario (a fault, a hostile input) named
        ``name``: survived if the test passes, with what
        :meth:`assert_nothing_left` found."""
        self.leaks = []
        failed = []
        self.addOnException(failed.append)
        self.addCleanup(lambda: reliability_log.record(
            kind, name, survived=not failed, leaks=self.leaks))

    def leftovers(self, server, port_ids=()):
        """Everything ``server`` (gone or failed) still holds on the host;
        the test must have no other server."""
        found = ['domain %s' % dom.name()
                 for dom in self.libvirt().listAllDomains()
                 if dom.UUIDString() == server['id'] or
                 dom.name().startswith(self.domain_prefix)]
        if os.path.isdir(self.instances_path):
            found += ['file %s' % name
                      for name in os.listdir(self.instances_path)
                      # The image cache and its locks (Nova's image cache
                      # manager's, in <instances_path>/locks) are the
                      # host's, not a server's.
                      if name not in ('_base', 'locks')]
        cache = os.path.join(self.instances_path, '_base')
        if os.path.isdir(cache):
            found += ['file _base/%s' % name for name in os.listdir(cache)
                      if not CACHE_ENTRY.fullmatch(name)]
        found += ['network device %s' % dev
                  for dev in os.listdir('/sys/class/net')
                  if any(port[:11] in dev for port in port_ids)]
        allocations = self.placement.get(
            '/allocations/%s' % server['id']).body['allocations']
        found += ['allocation %s' % a['resources']
                  for a in allocations.values()]
        found += ['pinned CPUs %s' % sorted(cpus)
                  for cpus in self.pinned_cpus() if cpus]
        return found

    def pinned_cpus(self):
        """The pinned CPUs of each NUMA cell of this host, as the resource
        tracker last saved them."""
        result = []
        for node in objects.ComputeNodeList.get_all_by_host(
                self.ctxt, self.compute_host):
            if node.numa_topology:
                result += [cell.pinned_cpus for cell in
                           objects.NUMATopology.obj_from_db_obj(
                               node.numa_topology).cells]
        return result

    def assert_nothing_left(self, server, port_ids=()):
        found = self.leftovers(server, port_ids)
        if hasattr(self, 'leaks'):
            self.leaks += found
        self.assertEqual([], found)
