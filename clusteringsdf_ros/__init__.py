"""ROS 2 glue of clusteringsdf: message conversions, parameters, nodes.

In an installed workspace this file is not used: rosidl generates the package's
``__init__.py`` next to ``clusteringsdf_ros/msg``, and the node modules are copied
beside it. When running from the source tree (tests, ``scripts/env.sh``) this
file makes the package span both the sources and the built messages.
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
