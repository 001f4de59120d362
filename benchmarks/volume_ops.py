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

"""Cinder volume operations on the all-in-one cloud (deploy/), timed.

Against the running cloud, whichever compute driver it runs (``deploy/up
--driver kvmx|libvirt``): a blank 1 GiB RBD volume attached to a running
server (request to ``in-use``) and detached (request to ``available``),
and a server booted from a volume made of the test image (request to
ACTIVE; the volume is made before the clock starts). Each operation runs
``--runs`` times: the first (cold) and the median of the others (warm)
are printed, and kept in /opt/kvmx-cloud/volume-results/<driver>.json;
once both drivers have results, the side-by-side and the ratio
nova-kvmx / stock are printed too.

    deploy/up --driver libvirt && .venv/bin/python benchmarks/volume_ops.py
    deploy/down && deploy/up --driver kvmx && \\
        .venv/bin/python benchmarks/volume_ops.py

Times are wall-clock seconds seen by an API client polling every 0.25 s
on a 2-core machine under TCG: the API, the scheduler, Cinder and Ceph
are in them, not only the driver.
"""

import argparse
import json
import os
import statistics
import sys
import time

import openstack
from openstack.compute.v2 import server as server_resource

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), 'deploy'))

from cloud import layout  # noqa: E402

RESULTS = os.path.join(layout.OPT, 'volume-results')
DRIVER_FILE = os.path.join(layout.STATE, 'compute-driver')
DRIVERS = ('kvmx', 'libvirt')
OPERATIONS = ('attach', 'detach', 'boot from volume')
POLL = 0.25
TIMEOUT = 300


def wait(what, check, timeout=TIMEOUT):
    """Seconds until ``check()`` is true."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise SystemExit('timed out after %d s waiting for %s'
                             % (timeout, what))
        time.sleep(POLL)
    return time.monotonic() - started


def volume_in(cloud, volume, status):
    def check():
        current = cloud.block_storage.get_volume(volume.id).status
        if current.startswith('error'):
            raise SystemExit('volume %s went to %s' % (volume.id, current))
        return current == status
    return check


def server_active(cloud, server):
    def check():
        current = cloud.compute.get_server(server.id)
        if current.status == 'ERROR':
            raise SystemExit('server %s went to ERROR: %s' % (
                server.id, current.fault))
        return current.status == 'ACTIVE'
    return check


class Bench(object):

    def __init__(self, cloud):
        self.cloud = cloud
        self.image = cloud.image.find_image('kvmx-guest',
                                            ignore_missing=False)
        self.flavor = cloud.compute.find_flavor('kvmx.tiny',
                                                ignore_missing=False)
        self.network = cloud.network.find_network(layout.PROVIDER_NET,
                                                  ignore_missing=False)
        self.made = []

    def server(self, name, **kwargs):
        server = self.cloud.compute.create_server(
            name=name, flavor_id=self.flavor.id,
            networks=[{'uuid': self.network.id}], **kwargs)
        self.made.append(server)
        return server

    def volume(self, name, **kwargs):
        volume = self.cloud.block_storage.create_volume(
            name=name, size=1, **kwargs)
        self.made.append(volume)
        wait('volume %s' % volume.id, volume_in(self.cloud, volume,
                                                'available'))
        return volume

    def attach_detach(self, runs):
        server = self.server('kvmx-bench-attach', image_id=self.image.id)
        wait('server %s' % server.id, server_active(self.cloud, server))
        # The guest handles the hot-unplug request once it has booted.
        wait('the guest booted', lambda: 'KVMX-GUEST-BOOTED' in
             self.cloud.compute.get_server_console_output(server)['output'])
        times = {'attach': [], 'detach': []}
        for run in range(runs):
            volume = self.volume('kvmx-bench-blank-%d' % run)
            started = time.monotonic()
            self.cloud.compute.create_volume_attachment(server, volume)
            times['attach'].append(time.monotonic() - started + wait(
                'attach', volume_in(self.cloud, volume, 'in-use')))
            started = time.monotonic()
            self.cloud.compute.delete_volume_attachment(server, volume)
            times['detach'].append(time.monotonic() - started + wait(
                'detach', volume_in(self.cloud, volume, 'available')))
            self.delete(volume)
        self.delete(server)
        return times

    def boot_from_volume(self, runs):
        times = []
        for run in range(runs):
            volume = self.volume('kvmx-bench-root-%d' % run,
                                 image_id=self.image.id)
            started = time.monotonic()
            server = self.server(
                'kvmx-bench-bfv-%d' % run, block_device_mapping=[{
                    'boot_index': 0, 'uuid': volume.id,
                    'source_type': 'volume', 'destination_type': 'volume',
                    'delete_on_termination': False}])
            times.append(time.monotonic() - started + wait(
                'server %s' % server.id, server_active(self.cloud, server)))
            self.delete(server)
            self.delete(volume)
        return times

    def delete(self, resource):
        if resource in self.made:
            self.made.remove(resource)
        if isinstance(resource, server_resource.Server):
            self.cloud.compute.delete_server(resource, ignore_missing=True)
            self.cloud.compute.wait_for_delete(resource, wait=TIMEOUT)
        else:
            wait('volume %s released' % resource.id, lambda: self.cloud.
                 block_storage.get_volume(resource.id).status != 'in-use')
            self.cloud.block_storage.delete_volume(resource,
                                                   ignore_missing=True)
            self.cloud.block_storage.wait_for_delete(resource, wait=TIMEOUT)

    def cleanup(self):
        for resource in reversed(list(self.made)):
            self.delete(resource)


def summary(times):
    return {'cold': times[0],
            'warm': statistics.median(times[1:]) if len(times) > 1 else None,
            'runs': times}


def fmt(value):
    return '%.1f' % value if value is not None else 'n/a'


def print_side_by_side():
    results = {}
    for driver in DRIVERS:
        try:
            with open(os.path.join(RESULTS, driver + '.json')) as f:
                results[driver] = json.load(f)
        except OSError:
            return
    print('\n%-18s %14s %14s %13s' % ('', 'nova-kvmx', 'libvirt',
                                      'ratio'))
    print('%-18s %6s %7s %6s %7s %6s %6s' % (
        'operation', 'cold', 'warm', 'cold', 'warm', 'cold', 'warm'))
    for op in OPERATIONS:
        ours, stock = results['kvmx'][op], results['libvirt'][op]
        ratios = [fmt(ours[k] / stock[k]) if ours[k] and stock[k] else 'n/a'
                  for k in ('cold', 'warm')]
        print('%-18s %6s %7s %6s %7s %6s %6s' % (
            op, fmt(ours['cold']), fmt(ours['warm']), fmt(stock['cold']),
            fmt(stock['warm']), ratios[0], ratios[1]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--runs', type=int, default=5,
                        help='runs of each operation (default: %(default)s)')
    args = parser.parse_args()
    if args.runs < 1:
        parser.error('--runs must be at least 1')
    try:
        with open(DRIVER_FILE) as f:
            driver = f.read().strip()
    except OSError:
        raise SystemExit('the cloud is not up: run deploy/up first')
    os.environ['OS_CLIENT_CONFIG_FILE'] = layout.CLOUDS_YAML
    bench = Bench(openstack.connect(cloud='kvmx-demo'))
    try:
        times = bench.attach_detach(args.runs)
        times['boot from volume'] = bench.boot_from_volume(args.runs)
    finally:
        bench.cleanup()
    result = {op: summary(times[op]) for op in OPERATIONS}
    print('compute_driver %s, %d runs, seconds (cold: first run, warm: '
          'median of the others)' % (driver, args.runs))
    print('%-18s %6s %6s   %s' % ('operation', 'cold', 'warm', 'runs'))
    for op in OPERATIONS:
        print('%-18s %6s %6s   %s' % (
            op, fmt(result[op]['cold']), fmt(result[op]['warm']),
            ' '.join(fmt(t) for t in result[op]['runs'])))
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, driver + '.json'), 'w') as f:
        json.dump(result, f, indent=1)
    print_side_by_side()


if __name__ == '__main__':
    main()
