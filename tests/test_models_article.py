"""The article's conv generator as written (models.ArticleConvGenerator), beside the book's ConvGenerator."""
import pytest
import torch
from torch import nn

from gan_utils import models


def test_article_conv_generator_layers_are_the_articles():
    net_G = models.ArticleConvGenerator()
    kinds = [type(m) for m in (*net_G.project, *net_G.upsample)]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.Tanh,
                     nn.ConvTranspose2d, nn.BatchNorm2d, nn.ReLU,
                     nn.ConvTranspose2d, nn.BatchNorm2d, nn.Tanh]
    # Linear 100*12544 + 12544, BN1d 2*12544, ConvT 256*128*16 + 128, BN 2*128, ConvT 128*16 + 1, BN 2*1
    assert models.count_parameters(net_G) == 1_818_755


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_article_conv_generator_shapes_and_range(shape):
    torch.manual_seed(0)
    net_G = models.ArticleConvGenerator(latent_dim=16, img_shape=shape)
    x = net_G(torch.randn(8, 16))
    assert x.shape == (8, *shape)
    assert x.abs().max() < 1  # Tanh output
    # The output BatchNorm makes every channel of a training batch mean 0 before the Tanh.
    pre_tanh = net_G.upsample[:-1](net_G.project(torch.randn(8, 16)).view(-1, *net_G.start))
    torch.testing.assert_close(pre_tanh.mean(dim=(0, 2, 3)), torch.zeros(shape[0]), atol=1e-5, rtol=0)


def test_article_and_book_conv_generators_differ_only_where_the_article_does():
    article, book = models.ArticleConvGenerator(), models.ConvGenerator()
    # Same shape trail; the article adds the biases the book drops before BN and an output BN.
    assert article.start == book.start
    extra = models.count_parameters(article) - models.count_parameters(book)
    assert extra == 12544 + 128 + 2


def test_article_conv_generator_bad_input():
    with pytest.raises(ValueError, match="divisible by 4"):  # ConvGenerator's message
        models.ArticleConvGenerator(img_shape=(1, 30, 30))
    with pytest.raises(ValueError, match=r"shape \(B, 100\)"):
        models.ArticleConvGenerator()(torch.randn(2, 99))
