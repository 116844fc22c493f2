// An independent consumer of our Kafka message values, as a Java service would write
// it: Apache Avro's BinaryMessageDecoder (single-object encoding) with the .avsc
// files of schemas/avro registered, one decoder per record type, newest version as
// the reader schema. Run by crates/vero-model/tests/independent_decoders.rs with
// Debian's libavro-java (1.8.2) on the classpath:
//
//   java -cp <avro and jackson jars> AvroDecode.java <schemas dir> <messages dir>
//
// Prints `fingerprint <file> <hex>` for every schema (Java's own
// SchemaNormalization.parsingFingerprint64, in wire byte order), then per message
// file `<type>.<anything>.bin` either `ok <file> <record as JSON>` or
// `error <file> <exception>`. Exits non-zero only when it cannot start.

import java.io.ByteArrayInputStream;
import java.io.File;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericEnumSymbol;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.message.BinaryMessageDecoder;
import org.codehaus.jackson.map.ObjectMapper;

public class AvroDecode {
    public static void main(String[] args) throws Exception {
        File[] avsc = new File(args[0]).listFiles((dir, name) -> name.endsWith(".avsc"));
        Arrays.sort(avsc); // track_event.v1 before track_event.v2: the last is the newest
        Map<String, List<Schema>> byType = new TreeMap<>();
        for (File file : avsc) {
            Schema schema = new Schema.Parser().parse(file);
            long fp = SchemaNormalization.parsingFingerprint64(schema);
            byte[] le = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(fp).array();
            StringBuilder hex = new StringBuilder();
            for (byte b : le) hex.append(String.format("%02x", b));
            System.out.println("fingerprint " + file.getName() + " " + hex);
            String type = file.getName().substring(0, file.getName().indexOf('.'));
            byType.computeIfAbsent(type, t -> new ArrayList<>()).add(schema);
        }
        Map<String, BinaryMessageDecoder<GenericRecord>> decoders = new TreeMap<>();
        byType.forEach((type, versions) -> {
            Schema newest = versions.get(versions.size() - 1);
            BinaryMessageDecoder<GenericRecord> decoder = new BinaryMessageDecoder<>(GenericData.get(), newest);
            versions.forEach(decoder::addSchema);
            decoders.put(type, decoder);
        });

        ObjectMapper json = new ObjectMapper();
        File[] messages = new File(args[1]).listFiles((dir, name) -> name.endsWith(".bin"));
        Arrays.sort(messages);
        for (File file : messages) {
            String type = file.getName().substring(0, file.getName().indexOf('.'));
            BinaryMessageDecoder<GenericRecord> decoder = decoders.get(type);
            if (decoder == null) throw new IllegalArgumentException("no schema for " + file.getName());
            try {
                GenericRecord record = decoder.decode(new ByteArrayInputStream(Files.readAllBytes(file.toPath())), null);
                System.out.println("ok " + file.getName() + " " + json.writeValueAsString(plain(record)));
            } catch (Exception e) {
                System.out.println("error " + file.getName() + " " + e);
            }
        }
    }

    /// A decoded Avro value as plain JSON-able Java objects.
    static Object plain(Object value) {
        if (value instanceof GenericRecord) {
            GenericRecord record = (GenericRecord) value;
            Map<String, Object> out = new LinkedHashMap<>();
            for (Schema.Field field : record.getSchema().getFields()) out.put(field.name(), plain(record.get(field.name())));
            return out;
        }
        if (value instanceof Collection) {
            List<Object> out = new ArrayList<>();
            for (Object item : (Collection<?>) value) out.add(plain(item));
            return out;
        }
        if (value instanceof CharSequence || value instanceof GenericEnumSymbol) return value.toString();
        return value; // null, Boolean, Long
    }
}
