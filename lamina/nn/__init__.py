"""``lamina.nn``: modules, layers, losses and their functional forms (``torch.nn``)."""

from lamina.nn import functional, init, utils
from lamina.nn.modules import *  # noqa: F403
from lamina.nn.modules.activation_attention import *  # noqa: F403
from lamina.nn.modules.conv import *  # noqa: F403
from lamina.nn.modules.normalization import *  # noqa: F403
from lamina.nn.modules.pixelshuffle import *  # noqa: F403
from lamina.nn.modules.pooling import *  # noqa: F403
from lamina.nn.modules.rnn import *  # noqa: F403
from lamina.nn.modules.transformer import *  # noqa: F403
from lamina.nn.modules.upsampling import *  # noqa: F403
from lamina.nn.parameter import Parameter
