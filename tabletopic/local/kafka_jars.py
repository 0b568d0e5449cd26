"""The broker's runtime classpath: each jar on Maven Central with the SHA-1 it must have.

Fetched by plain HTTPS (kafka.fetch), so the quickstart needs Java but no Maven. The list is what
`mvn dependency:copy-dependencies -DincludeScope=runtime` resolves for `org.apache.kafka:kafka_2.13`
with slf4j-api 2.x and the log4j2 bridge (slf4j 1.x left out: the bridge needs 2.x alone). On a version
bump, resolve that POM once (`mvn dependency:list`) and write the new coordinates and hashes here;
tests/unit/local/test_kafka_jars.py checks the lists agree with the versions in kafka.py.

Kafka 3.9 (the last 3.x line, for the compatibility tests) has its own list, resolved the same way: its
broker still links ZooKeeper (and through it Netty), and its broker-logger controller calls the log4j 1 API,
so beside the same slf4j 2.x and log4j2 bridge it carries log4j-1.2-api, which sends those calls to log4j2
as well: one logging config serves both versions.
"""

from __future__ import annotations

from typing import NamedTuple

MAVEN_CENTRAL = "https://repo1.maven.org/maven2"


class Jar(NamedTuple):
    group: str
    artifact: str
    version: str
    sha1: str

    @property
    def file_name(self) -> str:
        return f"{self.artifact}-{self.version}.jar"

    def url(self, repository: str = MAVEN_CENTRAL) -> str:
        return f"{repository}/{self.group.replace('.', '/')}/{self.artifact}/{self.version}/{self.file_name}"


# group:artifact:version sha1, one jar a line.
_MANIFEST = """
org.hdrhistogram:HdrHistogram:2.2.2 7959933ebcc0f05b2eaa5af0a0c8689fa257b15c
net.sourceforge.argparse4j:argparse4j:0.7.0 6f0621d0c3888de39e0f06d01f37ba53a798e657
com.github.ben-manes.caffeine:caffeine:3.2.0 35eba09997476a39492ac7f7b2bb0e8292c09d17
commons-beanutils:commons-beanutils:1.9.4 d52b9abcd97f38c81342bb7e7ae1eee9b73cba51
commons-collections:commons-collections:3.2.2 8ad72fe39fa8c91eaaf12aadb21e0c3661fe26d5
commons-digester:commons-digester:2.1 73a8001e7a54a255eef0f03521ec1805dc738ca0
commons-logging:commons-logging:1.3.2 3dc966156ef19d23c839715165435e582fafa753
commons-validator:commons-validator:1.9.0 26e49d333890ccad072eb530a85fceb9c07818df
com.dynatrace.hash4j:hash4j:0.22.0 2d61bfb5b38469cb76141b06dc68d36a9007e9ad
com.fasterxml.jackson.core:jackson-annotations:2.19.0 fd1e7c56de1e5b658563c8c66d5074cceb4e3a0b
com.fasterxml.jackson.core:jackson-core:2.19.0 a90640e59ea42632a8e331ff1d6b706cf306050a
com.fasterxml.jackson.core:jackson-databind:2.19.0 b3f7506f6414fb04760561eec11a0880165c2a4a
com.fasterxml.jackson.dataformat:jackson-dataformat-csv:2.19.0 b7275a6795c70304e8b399db31b11ac72d6bc954
com.fasterxml.jackson.dataformat:jackson-dataformat-yaml:2.19.0 2d735ab4ecebf5c2bf248d4036fd4ba6d73d0cc1
com.fasterxml.jackson.datatype:jackson-datatype-jdk8:2.19.0 69312135ff6d6646203b9681fa48505f369210a6
net.sf.jopt-simple:jopt-simple:5.0.4 4fdac2fbe92dfad86aa6e9301736f6b4342a3f5c
org.bitbucket.b_c:jose4j:0.9.6 357a3836bb5da16f314f3a1e954518e5468cd915
org.jspecify:jspecify:1.0.0 7425a601c1c7ec76645a78d22b8c6a627edee507
org.apache.kafka:kafka-clients:4.1.1 094cb8f39c3157038ec9577634d310a2bf5fb516
org.apache.kafka:kafka-coordinator-common:4.1.1 a404eaac7fc653d63453005ab003bf308599f87d
org.apache.kafka:kafka-group-coordinator:4.1.1 5d0e09fc27c29c7186fe94116712a09d00f29979
org.apache.kafka:kafka-group-coordinator-api:4.1.1 40b61cb614687a50188f3c5fa7cf65dbcd059221
org.apache.kafka:kafka-metadata:4.1.1 a11c8a6e27aa783ec3e8b4b7f5c318281fa494a8
org.apache.kafka:kafka-raft:4.1.1 b5bae33d2adf96738119e40f76c283d24cc58361
org.apache.kafka:kafka-server:4.1.1 947c8b919656c51c431bae9cd9196f8d0911c5b6
org.apache.kafka:kafka-server-common:4.1.1 1bf567866482bd9d7a8ad3eb73b3ffbab51a6b5b
org.apache.kafka:kafka-share-coordinator:4.1.1 eed38c6dba008d378cfa24f8d9212ece225a56bd
org.apache.kafka:kafka-storage:4.1.1 9419c2775056356d815db7681dda97e2670e8dd7
org.apache.kafka:kafka-storage-api:4.1.1 b571e6253b711ad633174a283232e5f26b107718
org.apache.kafka:kafka-tools-api:4.1.1 e9dd9701e3d13cfd6c6b84ce7bfd11769641e937
org.apache.kafka:kafka-transaction-coordinator:4.1.1 d0f94fcfb53a7574262750ebf465b484d0841859
org.apache.kafka:kafka_2.13:4.1.1 3183b1bb5d0209dce5634cf56e8893cf42b17467
org.apache.logging.log4j:log4j-api:2.24.3 b02c125db8b6d295adf72ae6e71af5d83bce2370
org.apache.logging.log4j:log4j-core:2.24.3 7f6a261243ca767c7f38fd4b542bcde626c8894e
org.apache.logging.log4j:log4j-slf4j2-impl:2.24.3 c3bda2dc612bfc780ad06c5acf5e0ffd55b770e5
org.lz4:lz4-java:1.8.0 4b986a99445e49ea5fbf5d149c4b63f6ed6c6780
com.yammer.metrics:metrics-core:2.2.0 f82c035cfa786d3cbec362c38c22a5f5b1bc8724
org.pcollections:pcollections:4.0.2 c8398b4443deae11e6eaffbc04a371b4eb8f6b8e
com.google.re2j:re2j:1.8 12c25e923e9e4fb1575a7640a2698745c6f19a94
org.scala-lang:scala-library:2.13.16 9e064d9304904fd7b6bd2b55a9e601b8c1c9006e
com.typesafe.scala-logging:scala-logging_2.13:3.9.5 d5a0f61168371d8cff1c510f55407aa46bea8366
org.scala-lang:scala-reflect:2.13.16 4958d4e43faf2d6d66f18ce2aa9a3e5ba141f87b
org.slf4j:slf4j-api:2.0.17 d9e58ac9c7779ba3bf8142aff6c830617a7fe60f
org.yaml:snakeyaml:2.4 e0666b825b796f85521f02360e77f4c92c5a7a07
org.xerial.snappy:snappy-java:1.1.10.7 3049f95640f4625a945cfab85715f603fa4c8f80
com.github.luben:zstd-jni:1.5.6-10 7e146ecb598af55d1f64d1c118af27569a848558
"""


def _parse(manifest: str) -> tuple[Jar, ...]:
    jars = []
    for line in manifest.split("\n"):
        if line.strip():
            coordinates, sha1 = line.split()
            group, artifact, version = coordinates.split(":")
            jars.append(Jar(group, artifact, version, sha1))
    return tuple(jars)


BROKER_JARS = _parse(_MANIFEST)

# org.apache.kafka:kafka_2.13:3.9.2 resolved the same way, slf4j-api raised to 2.x, plus log4j-1.2-api.
_MANIFEST_3_9 = """
net.sourceforge.argparse4j:argparse4j:0.7.0 6f0621d0c3888de39e0f06d01f37ba53a798e657
org.apache.yetus:audience-annotations:0.12.0 e0efa60318229590103e31c69ebdaae56d903644
com.github.ben-manes.caffeine:caffeine:2.9.3 b162491f768824d21487551873f9b3b374a7fe19
commons-beanutils:commons-beanutils:1.11.0 ac03ea606d13de04c2e4508227680faff151f491
commons-cli:commons-cli:1.4 c51c00206bb913cd8612b24abd9fa98ae89719b1
commons-collections:commons-collections:3.2.2 8ad72fe39fa8c91eaaf12aadb21e0c3661fe26d5
commons-digester:commons-digester:2.1 73a8001e7a54a255eef0f03521ec1805dc738ca0
commons-io:commons-io:2.14.0 a4c6e1f6c196339473cd2e1b037f0eb97c62755b
commons-logging:commons-logging:1.3.5 a3fcc5d3c29b2b03433aa2d2f2d2c1b1638924a1
commons-validator:commons-validator:1.10.1 cdf5c2a69aad509c4db54786f19f1e1ccc471bcf
com.google.errorprone:error_prone_annotations:2.10.0 9bc20b94d3ac42489cf6ce1e42509c86f6f861a1
com.fasterxml.jackson.core:jackson-annotations:2.16.2 dfcd11c847ea7276aa073c25f5fe8ee361748d7f
com.fasterxml.jackson.core:jackson-core:2.16.2 b4f588bf070f77b604c645a7d60b71eae2e6ea09
com.fasterxml.jackson.core:jackson-databind:2.16.2 7fda67535b54d74eebf6157682b835c847410932
com.fasterxml.jackson.dataformat:jackson-dataformat-csv:2.16.2 589c61739a773f581845d3505622007f26b38c2a
com.fasterxml.jackson.datatype:jackson-datatype-jdk8:2.16.2 02c3593b299fcd1a6b8197876f95da82d7aa7340
com.fasterxml.jackson.module:jackson-module-scala_2.13:2.16.2 c16b5aa1cbcf5efae84cba582591bed8b3356765
net.sf.jopt-simple:jopt-simple:5.0.4 4fdac2fbe92dfad86aa6e9301736f6b4342a3f5c
org.bitbucket.b_c:jose4j:0.9.6 357a3836bb5da16f314f3a1e954518e5468cd915
org.apache.kafka:kafka-clients:3.9.2 a06edbaa01458ed2e8cf1be69a18c2f231fda6e0
org.apache.kafka:kafka-group-coordinator:3.9.2 416c1dbcdd1e141707dd89dfe04328a9ce870264
org.apache.kafka:kafka-group-coordinator-api:3.9.2 7a69f2be4047f3f55554c403fe78680d54a26480
org.apache.kafka:kafka-metadata:3.9.2 01a266d85e89f1216e1325955942c3037da21d3b
org.apache.kafka:kafka-raft:3.9.2 5b72980224762aef91766a8fb047a03640905700
org.apache.kafka:kafka-server:3.9.2 e3d11d66ce497bfc3572d9e095280b4a893d16fa
org.apache.kafka:kafka-server-common:3.9.2 e6fe2cdafd5b2a0b07db07cf692863e0b9335625
org.apache.kafka:kafka-storage:3.9.2 a8a997893c4cb8cc3093c71720b3c33f1e03cade
org.apache.kafka:kafka-storage-api:3.9.2 8fa32fee158c900bd2d3d87d09d5838bd5a8813f
org.apache.kafka:kafka-tools-api:3.9.2 d1b40695ba813f5647fe5bcd5960628cd1ef9a77
org.apache.kafka:kafka-transaction-coordinator:3.9.2 b001c1f9e45521be560d9a2a9e6d337a1b3a82c9
org.apache.kafka:kafka_2.13:3.9.2 a671d4c2c65740d4a564687d9313ca50be6c10e5
org.apache.logging.log4j:log4j-1.2-api:2.24.3 880d64cfe147369dae43e7816b608fae2096abd0
org.apache.logging.log4j:log4j-api:2.24.3 b02c125db8b6d295adf72ae6e71af5d83bce2370
org.apache.logging.log4j:log4j-core:2.24.3 7f6a261243ca767c7f38fd4b542bcde626c8894e
org.apache.logging.log4j:log4j-slf4j2-impl:2.24.3 c3bda2dc612bfc780ad06c5acf5e0ffd55b770e5
at.yawk.lz4:lz4-java:1.10.1 f541d7f910fe3d76f38f799c507c48cc81b12ecb
io.dropwizard.metrics:metrics-core:4.1.12.1 cb2f351bf4463751201f43bb99865235d5ba07ca
com.yammer.metrics:metrics-core:2.2.0 f82c035cfa786d3cbec362c38c22a5f5b1bc8724
io.netty:netty-buffer:4.1.105.Final c1c1b4d2c89d2f74c80a2701c124ecfde1ecf067
io.netty:netty-codec:4.1.105.Final 4733830b4b2b9111e9bf8136691d07b20027cd51
io.netty:netty-common:4.1.105.Final 8438fc1de4c10301bb53ceb49ed8db74bd40cc2c
io.netty:netty-handler:4.1.105.Final 7e997e63d0a445c4b352bcd38474d50f06f2eaf1
io.netty:netty-resolver:4.1.105.Final e69687e013ded60f3f9054164e121c2702200711
io.netty:netty-transport:4.1.105.Final 5184e1308ed7d853d7061b4e21e47e8de43a28df
io.netty:netty-transport-classes-epoll:4.1.105.Final e006d3b0cfd5b8133c9fcebfa05d9ae80a721e80
io.netty:netty-transport-native-epoll:4.1.105.Final cb57e2ef48fe68ca5a90ffd456c4b36147bdd175
io.netty:netty-transport-native-unix-common:4.1.105.Final 8bb8ab3a8f1e730c6e7d1d1cf8fc24221eacc6cd
com.thoughtworks.paranamer:paranamer:2.8 619eba74c19ccf1da8ebec97a2d7f8ba05773dd6
org.pcollections:pcollections:4.0.1 059f3bf5fb28c5f5386804dcf129267416b75d7c
org.scala-lang.modules:scala-collection-compat_2.13:2.10.0 2464528d14329ff2b44bceff918d6c00300adcf4
org.scala-lang.modules:scala-java8-compat_2.13:1.0.2 5b54f60ccf03e41e24c466462a72475ee918c304
org.scala-lang:scala-library:2.13.15 ed6f1d58968b16c5f9067d5cac032d952552de58
com.typesafe.scala-logging:scala-logging_2.13:3.9.5 d5a0f61168371d8cff1c510f55407aa46bea8366
org.scala-lang:scala-reflect:2.13.15 355927b10366563a8f1b56c1f34ff376f2f7c8c5
org.slf4j:slf4j-api:2.0.17 d9e58ac9c7779ba3bf8142aff6c830617a7fe60f
org.xerial.snappy:snappy-java:1.1.10.5 ac605269f3598506196e469f1fb0d7ed5c55059e
org.apache.zookeeper:zookeeper:3.8.4 6638e37b887b5a279044afbdc9928e19f678eb2e
org.apache.zookeeper:zookeeper-jute:3.8.4 de7b8a41bbe1ccdfc009de51fa6d160db3ca8025
com.github.luben:zstd-jni:1.5.6-4 ba9e303e0b5e94cdd0017390d7d8c06f47fd61f7
"""

BROKER_JARS_3_9 = _parse(_MANIFEST_3_9)
